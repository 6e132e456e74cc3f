"""ConfigWatcher + ReloadCoordinator on real files: every way a file gets replaced ends in one reload."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from localagent.agent.reload.coordinator import ReloadCoordinator
from localagent.agent.reload.watcher import ConfigWatcher
from tests.reload.helpers import RecordingAgent, loader, save_by_rename, write_config
from tests.support.wait import wait_for


class Rig:
    """A coordinator over a RecordingAgent, with a running watcher, for one config file."""

    def __init__(self, *files: Path) -> None:
        self.load = loader(*files)
        self.agent = RecordingAgent(self.load())
        self.coordinator = ReloadCoordinator(self.agent, self.load)
        self.stop = threading.Event()
        self.watcher = ConfigWatcher(self.coordinator.watched_paths, self.coordinator.reload, stop_event=self.stop)
        self.watcher.start()

    def close(self) -> None:
        self.stop.set()
        self.watcher.join()

    def wait_labels(self, *labels: str) -> None:
        wait_for(lambda: self.agent.labels() == labels, what=f"labels {labels}")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "agent.toml"
    path.parent.mkdir()
    write_config(path, tmp_path / "state", ["a"])
    return path


@pytest.fixture
def rig(config: Path) -> Iterator[Rig]:
    rig = Rig(config)
    yield rig
    rig.close()


def text(tmp_path: Path, *labels: str) -> str:
    scratch = tmp_path / "scratch.toml"
    write_config(scratch, tmp_path / "state", list(labels))
    return scratch.read_text()


def test_atomic_rename_save_is_applied(rig: Rig, config: Path, tmp_path: Path) -> None:
    save_by_rename(config, text(tmp_path, "a", "b"))
    rig.wait_labels("a", "b")
    assert len(rig.agent.applied) == 1


def test_in_place_write_is_applied(rig: Rig, config: Path, tmp_path: Path) -> None:
    write_config(config, tmp_path / "state", ["c"])
    rig.wait_labels("c")


def test_a_burst_of_50_writes_ends_in_one_reload_of_the_final_content(rig: Rig, config: Path, tmp_path: Path) -> None:
    for index in range(50):
        write_config(config, tmp_path / "state", [f"burst-{index}"])
    rig.wait_labels("burst-49")
    # A later, distinct change is the second reload: nothing from the burst came in between or after.
    save_by_rename(config, text(tmp_path, "after"))
    rig.wait_labels("after")
    assert [loaded.config.agent.labels for loaded in rig.agent.applied] == [("burst-49",), ("after",)]


def test_unrelated_files_in_the_same_directory_do_not_reload(rig: Rig, config: Path, tmp_path: Path) -> None:
    for index in range(5):
        (config.parent / f"notes-{index}.txt").write_text("x")
    save_by_rename(config, text(tmp_path, "z"))
    rig.wait_labels("z")
    assert len(rig.agent.applied) == 1


def test_rewriting_the_same_content_does_not_reload(rig: Rig, config: Path, tmp_path: Path) -> None:
    original = config.read_text()
    config.write_text(original + "\n# only a comment\n")
    save_by_rename(config, text(tmp_path, "marker"))
    rig.wait_labels("marker")
    assert len(rig.agent.applied) == 1


def test_removed_then_restored_file_reports_then_clears_the_error(rig: Rig, config: Path, tmp_path: Path) -> None:
    original = config.read_text()
    config.unlink()
    wait_for(lambda: len(rig.agent.rejected) >= 1, what="the missing file to be refused")
    assert "agent.toml" in str(rig.agent.rejected[-1])
    assert rig.agent.labels() == ("a",)  # the last good config stays in force
    config.write_text(original)
    wait_for(lambda: len(rig.agent.applied) == 1, what="the restored file to clear the error")
    assert rig.agent.labels() == ("a",)


def test_syntax_error_keeps_the_last_good_config_then_the_fix_applies(rig: Rig, config: Path, tmp_path: Path) -> None:
    original = config.read_text()
    with config.open("a") as handle:
        handle.write("this is = = not toml\n")
    wait_for(lambda: len(rig.agent.rejected) == 1, what="the syntax error to be refused")
    assert rig.agent.labels() == ("a",)
    assert "agent.toml:" in str(rig.agent.rejected[0])
    save_by_rename(config, original.replace('"a"', '"fixed"'))
    rig.wait_labels("fixed")


def test_kubernetes_configmap_symlink_swap(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()
    first = mount / "..2024_01_01"
    first.mkdir()
    write_config(first / "agent.toml", tmp_path / "state", ["v1"])
    (mount / "..data").symlink_to(first.name)
    (mount / "agent.toml").symlink_to("..data/agent.toml")
    rig = Rig(mount / "agent.toml")
    try:
        # What the kubelet does: a new timestamped dir, a new ..data link renamed over the old one.
        second = mount / "..2024_01_02"
        second.mkdir()
        write_config(second / "agent.toml", tmp_path / "state", ["v2"])
        (mount / "..data_tmp").symlink_to(second.name)
        os.replace(mount / "..data_tmp", mount / "..data")
        for child in first.iterdir():
            child.unlink()
        first.rmdir()
        rig.wait_labels("v2")
        # And again, so the watch followed the swap.
        third = mount / "..2024_01_03"
        third.mkdir()
        write_config(third / "agent.toml", tmp_path / "state", ["v3"])
        (mount / "..data_tmp").symlink_to(third.name)
        os.replace(mount / "..data_tmp", mount / "..data")
        rig.wait_labels("v3")
    finally:
        rig.close()


def test_symlinked_file_edited_at_its_target(tmp_path: Path) -> None:
    real = tmp_path / "repo" / "hosts" / "host1.toml"
    real.parent.mkdir(parents=True)
    write_config(real, tmp_path / "state", ["one"])
    link = tmp_path / "etc" / "agent.toml"
    link.parent.mkdir()
    link.symlink_to(real)
    rig = Rig(link)
    try:
        save_by_rename(real, text(tmp_path, "two"))
        rig.wait_labels("two")
    finally:
        rig.close()


def test_key_file_rotation_reloads_and_a_new_key_file_is_watched(config: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "key-1").write_text("first-secret\n")
    write_config(config, tmp_path / "state", ["a"], extra=f'[api]\nkey_file = "{keys / "key-1"}"\n')
    rig = Rig(config)
    try:
        assert rig.agent.loaded.api_key == "first-secret"
        save_by_rename(keys / "key-1", "rotated-secret\n")
        wait_for(lambda: rig.agent.loaded.api_key == "rotated-secret", what="the rotated key")
        # Point api.key_file elsewhere: the watch follows to the new file.
        other = tmp_path / "other-keys"
        other.mkdir()
        (other / "key-2").write_text("second-secret\n")
        write_config(config, tmp_path / "state", ["a"], extra=f'[api]\nkey_file = "{other / "key-2"}"\n')
        wait_for(lambda: rig.agent.loaded.api_key == "second-secret", what="the new key file")
        wait_for(lambda: any(str(other) in str(d) for d in rig.watcher.plan.directories), what="the new watch")
        (other / "key-2").write_text("third-secret\n")
        wait_for(lambda: rig.agent.loaded.api_key == "third-secret", what="the new key file's rotation")
    finally:
        rig.close()


def test_sighup_and_file_changes_share_one_reload_path(rig: Rig, config: Path, tmp_path: Path) -> None:
    write_config(config, tmp_path / "state", ["via-hup"])
    assert rig.coordinator.reload("SIGHUP") or rig.agent.labels() == ("via-hup",)
    rig.wait_labels("via-hup")
    # The watcher sees the same content afterwards and does not apply it a second time.
    save_by_rename(config, text(tmp_path, "next"))
    rig.wait_labels("next")
    assert [loaded.config.agent.labels for loaded in rig.agent.applied] == [("via-hup",), ("next",)]
