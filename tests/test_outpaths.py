"""The output-path library (`tessera.outpaths`) under concurrent use."""

from types import SimpleNamespace

import pytest

from tessera.outpaths import make_parents, remove_created


def test_make_parents_tolerates_a_concurrent_mkdir(tmp_path):
    """Two builds into sibling folders under a parent that does not exist yet: the second
    finds the parent made by the first after it planned, and goes on (it does not own it)."""
    parent, child = tmp_path / "a", tmp_path / "a" / "b"
    plan = SimpleNamespace(create=[str(parent), str(child), str(child / "out")])
    parent.mkdir()                        # the other process won the race for "a"
    made = make_parents(plan)
    assert made == [str(child)] and child.is_dir()
    remove_created(made)
    assert parent.is_dir() and not child.exists()
    (tmp_path / "f").write_text("x")      # a file in the way is still an error
    with pytest.raises(FileExistsError):
        make_parents(SimpleNamespace(create=[str(tmp_path / "f"), str(tmp_path / "f" / "g")]))
