from mmrec.splits import is_held_out, split_of


def test_numeric_ids_follow_modulo_and_strings_are_stable():
    assert split_of("1550") == "test" and split_of("1551") == "val" and split_of("1552") == "train"
    assert is_held_out("10") and not is_held_out("11")
    ids = [f"sku-{i}" for i in range(2000)]
    first = [split_of(i) for i in ids]
    assert first == [split_of(i) for i in ids]
    share = first.count("test") / len(ids)
    assert 0.07 < share < 0.13
