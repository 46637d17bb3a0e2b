"""The vit_vs_cnn report states the lecture's claim from whatever grid it is given."""

from tasks.vision.report import _claim


def test_claim_with_one_size_does_not_read_a_trend():
    text = _claim({"cnn": {55000: [0.93]}, "vit": {55000: [0.88]},
                   "vit-local": {55000: [0.881]}})
    assert "5.0 points ahead" in text and "cannot be read yet" in text
    assert "1 of 1 sizes: restricting" in text


def test_claim_reads_the_gap_closing_with_data():
    text = _claim({"cnn": {1000: [0.80], 55000: [0.93]}, "vit": {1000: [0.70], 55000: [0.91]},
                   "vit-local": {1000: [0.69], 55000: [0.90]}})
    assert "closes part of the gap" in text and "0 of 2 sizes." in text
