"""How the jobs live with a model that fails on some inputs: the batch is retried in halves until the
inputs that fail on their own are isolated; the others are done, the failed ones wait and come back."""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


def run_in_halves(
    items: Sequence[Item], answer: Callable[[list[Item]], Sequence[Answer]]
) -> tuple[list[tuple[Item, Answer]], list[tuple[Item, Exception]]]:
    """answer(batch) over items; when it raises, over each half, down to single items.

    One input that breaks the model must not hold back the others, and a batch too large for the
    GPU succeeds in halves. Returns each item with its answer, and each item that failed on its own
    with the exception.
    """
    try:
        answers = answer(list(items))
        if len(answers) != len(items):
            raise ValueError(f"{len(answers)} answers for {len(items)} inputs")
        return list(zip(items, answers)), []
    except Exception as exc:
        if len(items) == 1:
            return [], [(items[0], exc)]
        half = len(items) // 2
        done_first, failed_first = run_in_halves(items[:half], answer)
        done_second, failed_second = run_in_halves(items[half:], answer)
        return done_first + done_second, failed_first + failed_second
