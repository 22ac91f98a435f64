import pytest

from l1recal.atomic import atomic_path, write_json


def test_file_replaced_only_on_success(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as staging:
        staging.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_folder_replaced_whole(tmp_path):
    target = tmp_path / "models"
    with atomic_path(target, is_dir=True) as staging:
        (staging / "old.txt").write_text("old")
    with atomic_path(target, is_dir=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_failed_folder_leaves_nothing(tmp_path):
    target = tmp_path / "models"
    with pytest.raises(ValueError), atomic_path(target, is_dir=True) as staging:
        (staging / "partial.txt").write_text("partial")
        raise ValueError("training failed")
    assert list(tmp_path.iterdir()) == []
