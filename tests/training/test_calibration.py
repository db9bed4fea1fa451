import pytest

from training.metrics import calibration


def test_calibration_by_hand():
    # 0.55 wrong, 0.65 right, 0.92 wrong, then 0.95, 0.97 and 1.0 right (1.0 falls in the last bin).
    found = calibration([0.95, 0.97, 0.92, 0.55, 0.65, 1.0], [True, True, False, False, True, True])
    assert [(b["low"], b["n"], b["accuracy"]) for b in found["bins"]] == [(0.5, 1, 0.0), (0.6, 1, 1.0), (0.9, 1, 0.0),
                                                                         (0.95, 3, 1.0)]
    assert found["bins"][-1]["confidence"] == pytest.approx((0.95 + 0.97 + 1.0) / 3)
    # ECE = (|0 - .55| + |1 - .65| + |0 - .92| + 3 * |1 - .97333|) / 6 = 1.9 / 6
    assert found["ece"] == pytest.approx(1.9 / 6)
    assert found["at_least_0.9"] == {"n": 4, "accuracy": 0.75}


def test_a_perfectly_calibrated_model_has_no_error():
    found = calibration([0.5, 0.5, 1.0], [True, False, True])
    assert found["ece"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="3 confidences but 2 answers"):
        calibration([0.5, 0.5, 1.0], [True, False])
