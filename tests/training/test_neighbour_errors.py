"""The neighbours check on dev data: which cases it builds and that it never scores a test description."""

from click.testing import CliRunner

from slm.harmonizer import description_key
from training.data import series_csv_examples, split_descriptions
from training.neighbour_errors import cases, main


def write_series(folder):
    rows = [(f"AX T{1 + i % 2} SE {i}", f"T{1 + i % 2}", "site-a" if i < 50 else "site-b") for i in range(100)]
    path = folder / "series.csv"
    path.write_text("description,label,source\n" + "".join(f"{d},{l},{s}\n" for d, l, s in rows), encoding="utf-8")
    return path


def test_cases_keep_test_descriptions_out_and_know_one_description_per_dialect_word(tmp_path):
    series = write_series(tmp_path)
    test_keys = {description_key(e.text) for e in split_descriptions(series_csv_examples(series), 0.3, 0)["test"]}
    found = cases(str(series), dialects=60)
    names = [name for name, _, _ in found]
    assert names[0] == "real dev part, train part known" and names[1:3] == ["site-a, a fifth known", "site-b, a fifth known"]
    assert all(description_key(e.text) not in test_keys for _, _, scored in found for e in scored)
    _, known, scored = found[-1]
    words = {(e.uid, e.answer) for e in known}
    assert len(words) == len(known) and {(e.uid, e.answer) for e in scored} <= words


def test_the_command_prints_a_row_per_case(tiny_model_folder, tmp_path):
    result = CliRunner().invoke(main, ["--model", str(tiny_model_folder), "--series", str(write_series(tmp_path)),
                                       "--dialects", "40"])
    assert result.exit_code == 0, result.output
    assert "was not trained with neighbours" in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("| ") and "---" not in line]) == 1 + 4
