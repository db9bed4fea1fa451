from slm.consensus import most_agreed


def test_the_text_the_others_agree_with_most_is_kept():
    # ROUGE-L F of "no acute disease" and "no active disease": LCS "no disease", 2 of 3 words each way: 2/3.
    # Agreement: "no acute disease" 1 (its other copy) + 2/3; "no active disease" 2 x 2/3; "cardiomegaly" 0.
    assert most_agreed(["no acute disease", "no active disease", "no acute disease", "cardiomegaly"]) == 0
    # The greedy text (first) loses when the samples agree on another.
    assert most_agreed(["cardiomegaly", "no active disease", "no acute disease", "no acute disease"]) == 2
    # Copies count: "no active disease" 1 + 2/3 = 1.67 beats "no acute disease" 2 x 2/3 = 1.33.
    assert most_agreed(["no acute disease", "no active disease", "no active disease", "cardiomegaly"]) == 1
    # A tie: "no acute disease" 2/3 x 2 + 2/3 ("no acute" of "no acute process") = 2, as "no active
    # disease" 1 + 2/3 + 1/3 ("no"): the first of them is kept.
    assert most_agreed(["no acute disease", "no active disease", "no active disease", "no acute process"]) == 0


def test_equals_keep_the_first_and_one_text_is_its_own_consensus():
    assert most_agreed(["heart normal", "lungs clear"]) == 0
    assert most_agreed(["Stable cardiomegaly."]) == 0
