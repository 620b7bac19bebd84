"""Kinetics-400 class names and target resolution."""

import pytest

from leaps.classes import kinetics400_classes, resolve_target
from leaps.errors import LeapsError, UnknownClassError


def test_kinetics400_has_400_unique_names_in_standard_order():
    names = kinetics400_classes()
    assert len(names) == 400 == len(set(names))
    assert names[:3] == ["abseiling", "air drumming", "answering questions"]
    assert names[-1] == "zumba"
    assert names[232] == "playing guitar"


def test_kinetics400_returns_a_fresh_list():
    kinetics400_classes().clear()  # mutating one result must not corrupt the cache
    assert len(kinetics400_classes()) == 400


@pytest.mark.parametrize(
    "target, index",
    [
        (5, 5),
        ("7", 7),
        (" 12 ", 12),
        ("playing guitar", 232),
        ("Playing_Guitar", 232),
        ("PLAYING   guitar", 232),
        ("passing American football (in game)", 208),
    ],
)
def test_resolve_target(target, index):
    assert resolve_target(target) == index


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownClassError, match="did you mean 'playing guitar'") as info:
        resolve_target("playing guitarr")
    assert isinstance(info.value, LeapsError)


def test_unknown_name_suggests_substring_matches():
    with pytest.raises(UnknownClassError, match="playing guitar"):
        resolve_target("guitar")


def test_unknown_name_without_suggestion():
    with pytest.raises(UnknownClassError, match="unknown target class 'qqqqzzzz'$"):
        resolve_target("qqqqzzzz")


@pytest.mark.parametrize("target", [400, "400", -1])
def test_out_of_range_for_kinetics(target):
    with pytest.raises(UnknownClassError, match="out of range.*400 classes"):
        resolve_target(target)


def test_num_classes_limits_the_index():
    assert resolve_target(9, num_classes=10) == 9
    with pytest.raises(UnknownClassError, match="0..9"):
        resolve_target(10, num_classes=10)


def test_custom_class_names():
    names = ["cat", "dog_barking"]
    assert resolve_target("Dog barking", class_names=names) == 1
    with pytest.raises(UnknownClassError, match="2 classes"):
        resolve_target(2, class_names=names)
    with pytest.raises(UnknownClassError, match="did you mean 'cat'"):
        resolve_target("cats", class_names=names)


def test_names_need_known_classes():
    with pytest.raises(UnknownClassError, match="give an index"):
        resolve_target("playing guitar", num_classes=10)


def test_name_beyond_num_classes_is_out_of_range():
    with pytest.raises(UnknownClassError, match="out of range"):
        resolve_target("zumba", class_names=kinetics400_classes(), num_classes=10)


@pytest.mark.parametrize("target", [True, 1.0, None])
def test_bad_target_types(target):
    with pytest.raises(UnknownClassError, match="index or a name"):
        resolve_target(target)
