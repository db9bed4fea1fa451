import torch

from slm.batch import GrowingLayer


def steps(*lengths: int, rows: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(rows, 2, n, 4, generator=generator), torch.randn(rows, 2, n, 4, generator=generator))
            for n in lengths]


def test_a_growing_layer_holds_what_concatenation_would_across_regrowths():
    layer, fed = GrowingLayer(), steps(5, 1, 1, 7, 1, 20, 1)
    for n, (keys, values) in enumerate(fed, start=1):
        got = layer.update(keys, values)
        assert torch.equal(got[0], torch.cat([k for k, _ in fed[:n]], dim=2))
        assert torch.equal(got[1], torch.cat([v for _, v in fed[:n]], dim=2))
    assert layer.get_seq_length() == 36


def test_a_fork_writes_past_the_original_which_reads_as_before_and_grows_over_it():
    (k0, v0), (k1, v1), (k2, v2) = steps(6, 1, 1)
    layer = GrowingLayer.holding(k0, v0)
    fork = layer.fork()
    fork.update(k1, v1)
    assert torch.equal(layer.keys, k0) and fork.get_seq_length() == 7
    layer.update(k2, v2)
    assert torch.equal(layer.keys, torch.cat([k0, k2], dim=2))


def test_rows_and_repeats_keep_each_rows_cache():
    (k0, v0), (k1, v1) = steps(4, 1)
    layer = GrowingLayer.holding(k0, v0)
    kept = layer.rows(torch.tensor([2, 0]))
    assert torch.equal(kept.keys, k0[[2, 0]])
    twice = layer.repeated(2)
    twice.update(k1.repeat_interleave(2, 0), v1.repeat_interleave(2, 0))
    assert torch.equal(twice.values, torch.cat([v0, v1], dim=2).repeat_interleave(2, 0))
    assert torch.equal(layer.keys, k0)  # the original is left as it was
