"""The writer: build/<name> is at every instant the complete old or new tree, whatever kills it.

Renders are killed with SIGKILL at random points (a forked child looping over two trees, and in
the slow tier the real CLI); after each kill the folder must equal one of the two trees, and the
next render must leave no leftovers. Also: concurrent renders, and the user's entries that the
writer must refuse to touch (exit 2).
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from vllmgen.render import swap, write as write_module
from vllmgen.render.compile import compile_file
from vllmgen.render.write import OutputError, write

RAY = ROOT / "specs" / "seed-two-node-ray.yaml"
MP = ROOT / "specs" / "seed-two-node-mp.yaml"
FOREIGN = {"NOTES.md": b"ours\n", "nodes/extra/mine.txt": b"mine\n"}


def _snapshot(root: Path) -> dict[str, tuple]:
    tree = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            kind = "d" if stat.S_ISDIR(info.st_mode) else "f"
            data = path.read_bytes() if kind == "f" else b""
            tree[path.relative_to(root).as_posix()] = (kind, stat.S_IMODE(info.st_mode), data)
    return tree


def _expected(artifacts, tmp: Path) -> dict[str, tuple]:
    target = tmp / "expected"
    write(artifacts, target)
    for relative, data in FOREIGN.items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_bytes(data)
        (target / relative).chmod(0o644)
    (target / "nodes" / "extra").chmod(0o755)
    return _snapshot(target)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    one, two = compile_file(RAY).artifacts, compile_file(MP).artifacts
    assert {a.path for a in one} != {a.path for a in two}  # stale files are removed on each switch
    return (one, _expected(one, tmp_path_factory.mktemp("a"))), (two, _expected(two, tmp_path_factory.mktemp("b")))


WRITER_FILES = {write_module.__file__, swap.__file__}
SWITCHES = {"exchange", "_switch_by_two_renames", "rename_new"}  # where build/<name> changes


def _render_traced(trees, target: Path, start: int, kill_at: int | None, after_switch: bool = False) -> tuple[int, int]:
    """Render the two trees in turn from ``start`` (two renders), counting the lines the writer runs
    (write.py, swap.py); SIGKILL this process just before line ``kill_at`` (counted from the first call of a
    switch when ``after_switch``). Returns the count and the line at which the first switch was called."""
    count, switch_at = 0, 0

    def trace(frame, event, arg):  # noqa: ANN001, ANN202
        nonlocal count, switch_at
        if event == "call" and frame.f_code.co_name in SWITCHES and not switch_at:
            switch_at = count
        if frame.f_code.co_filename not in WRITER_FILES:
            return None
        if event == "line":
            count += 1
            if kill_at is not None and count == kill_at + (switch_at if after_switch else 0) and \
                    (switch_at or not after_switch):
                os.kill(os.getpid(), signal.SIGKILL)
        return trace

    sys.settrace(trace)
    try:
        for turn in range(start, start + 2):
            write(trees[turn % 2][0], target)
    finally:
        sys.settrace(None)
    return count, switch_at


def _kill_renders(trees, tmp_path: Path, rounds: int | None, *, atomic: bool) -> tuple[int, int]:
    """Fork a child that renders the two trees in turn and SIGKILLs itself just before a chosen line of the
    writer; after each kill build/<name> must be there (atomic switch) and be the complete old or new tree,
    and the leftovers must not accumulate. The kill points are counted, not timed (a loaded machine moves
    timed kills, and what they hit): spread evenly over two renders, plus each of the first lines of the
    switch (the exchange; the fallback's two renames). ``rounds=None``: a kill before every line, each once.
    Returns how many of the two trees were seen after a kill, and how many kills landed inside a render
    (leaving a staging folder)."""
    out = tmp_path / "out"
    target = out / "d"
    out.mkdir()
    write(trees[0][0], target)
    for relative, data in FOREIGN.items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_bytes(data)
    expected = [trees[0][1], trees[1][1]]
    lines, switch_at = _render_traced(trees, target, 1, None)  # tree 1 then tree 0: back where it was
    assert lines > 100 and 0 < switch_at < lines // 2
    rounds = rounds or lines
    points = [(1 + i * lines // rounds, False) for i in range(rounds)] + [(offset, True) for offset in range(1, 11)]
    seen = set()
    mid_render = 0
    for index, (kill_at, after_switch) in enumerate(points):
        pid = os.fork()
        if pid == 0:
            try:
                _render_traced(trees, target, index % 2, kill_at, after_switch)
            finally:
                os._exit(3)  # never reached the kill: the count was wrong
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (kill_at, after_switch, status)
        if not atomic and not os.path.lexists(target):
            # the fallback's one window: the complete old tree waits in .old-*, restored next time
            retired = [p for p in out.iterdir() if ".d.old-" in p.name]
            assert len(retired) == 1 and _snapshot(retired[0]) in expected
            seen.add("missing")
            continue
        assert os.path.isdir(target), f"build/<name> missing after a kill at writer line {kill_at}"
        tree = _snapshot(target)
        assert tree in expected, "build/<name> is neither the complete old nor the complete new tree"
        seen.add(expected.index(tree))
        entries = len(list(out.iterdir()))
        assert entries <= 3, "leftovers accumulate"
        mid_render += entries > 1
    write(trees[0][0], target)  # the next render cleans up
    assert sorted(p.name for p in out.iterdir()) == ["d"]
    assert _snapshot(target) == trees[0][1]
    print(f"{len(points)} kills over {lines} writer lines (switch at {switch_at}): {mid_render} left a staging "
          f"folder behind (killed inside a render); trees seen after a kill: {sorted(seen, key=str)}")
    return len(seen), mid_render


def test_killed_renders_leave_a_complete_tree_and_no_leftovers(trees, tmp_path):
    seen, mid_render = _kill_renders(trees, tmp_path, rounds=50, atomic=True)
    assert seen == 2 and mid_render >= 10  # both trees seen; kills landed inside renders


def test_killed_renders_with_the_two_rename_fallback_recover(trees, tmp_path, monkeypatch):
    def unsupported(first, second):
        raise swap.Unsupported("test")

    monkeypatch.setattr(swap, "exchange", unsupported)
    seen, _ = _kill_renders(trees, tmp_path, rounds=25, atomic=False)
    assert seen == 3  # both trees, and the window between the two renames (the old tree restored next time)


@pytest.mark.slow
def test_a_kill_before_every_writer_line(trees, tmp_path):
    """Exhaustive: two renders run ~900 writer lines, and a kill lands before each of them once (it was 1,500
    kills spread over them, most lines hit twice); most of them inside a render."""
    seen, mid_render = _kill_renders(trees, tmp_path, rounds=None, atomic=True)
    assert seen == 2 and mid_render >= 450


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vllmgen", "render", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_killing_the_cli_at_random_points(tmp_path):
    rng = random.Random(4)
    out = tmp_path / "out"
    assert _cli(str(RAY), "-o", str(out)).wait() == 0
    target = out / "qwen3-next-tp16-ray"
    before = _snapshot(target)
    mp_spec = tmp_path / "spec.yaml"  # the same deployment name with another backend
    mp_spec.write_text(RAY.read_text().replace("backend: ray", "backend: mp"))
    assert _cli(str(mp_spec), "-o", str(tmp_path / "after")).wait() == 0
    after = _snapshot(tmp_path / "after" / "qwen3-next-tp16-ray")
    for turn in range(30):
        process = _cli(str(mp_spec if turn % 2 else RAY), "-o", str(out))
        time.sleep(rng.uniform(0.2, 0.8))  # a cold render takes ~0.5 s here: before, during and after the switch
        process.kill()
        process.wait()
        assert _snapshot(target) in (before, after)
    assert _cli(str(RAY), "-o", str(out)).wait() == 0
    assert sorted(p.name for p in out.iterdir()) == [target.name]


def test_leftovers_of_killed_renders_are_removed_and_a_lost_tree_restored(tmp_path, trees):
    out = tmp_path / "out"
    target = out / "d"
    write(trees[0][0], target)
    (target / "NOTES.md").write_text("ours\n")
    (out / ".d.new-abcd1234").mkdir()
    (out / ".d.new-abcd1234" / "half").write_text("x")
    (out / ".other.new-abcd1234").mkdir()  # another deployment's: not ours to remove
    os.rename(target, out / ".d.old-zz99zz99")  # killed between the fallback's two renames
    write(trees[1][0], target)
    assert sorted(p.name for p in out.iterdir()) == [".other.new-abcd1234", "d"]
    assert (target / "NOTES.md").read_text() == "ours\n"  # carried over from the restored old tree
    assert not (target / "serve.sh").exists()  # the mp tree, the ray tree's stale serve.sh gone


def test_concurrent_renders_are_serialised(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    mp_spec = tmp_path / "spec.yaml"
    mp_spec.write_text(RAY.read_text().replace("backend: ray", "backend: mp"))
    holder = os.open(out, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a render in progress holds it
    try:
        waiting = _cli(str(RAY), "-o", str(out))
        line = waiting.stderr.readline()
        while ": warning: " in line:  # the spec's own validate warnings come first
            line = waiting.stderr.readline()
        assert "another vllmgen render into" in line
        assert waiting.poll() is None
    finally:
        os.close(holder)
    racing = [_cli(str(mp_spec), "-o", str(out)) for _ in range(2)]
    assert waiting.wait() == 0 and all(process.wait() == 0 for process in racing)
    assert sorted(p.name for p in out.iterdir()) == ["qwen3-next-tp16-ray"]


def test_a_lock_held_too_long_is_a_clear_error(tmp_path, monkeypatch, trees):
    monkeypatch.setattr(write_module, "LOCK_TIMEOUT_S", 0.1)
    out = tmp_path / "out"
    out.mkdir()
    holder = os.open(out, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with pytest.raises(OutputError, match="another vllmgen render into .* has held it"):
            write(trees[0][0], out / "d")
    finally:
        os.close(holder)
    assert list(out.iterdir()) == []


class Result:
    def __init__(self, returncode: int, stderr: str):
        self.returncode, self.stderr = returncode, stderr


@pytest.fixture
def render_cli(monkeypatch, capsys):
    """``vllmgen render RAY -o OUT`` in this process (a subprocess per case costs ~0.5 s)."""
    from vllmgen.cli import commands as cli

    def run(out: Path) -> Result:
        monkeypatch.setattr(sys, "argv", ["vllmgen", "render", str(RAY), "-o", str(out)])
        capsys.readouterr()
        try:
            cli.main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        return Result(code, capsys.readouterr().err)

    return run


@pytest.mark.parametrize("entry", ["file", "symlink-to-folder", "dangling-symlink"])
def test_a_non_folder_at_the_deployment_path_is_refused_untouched(tmp_path, entry, render_cli):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "qwen3-next-tp16-ray"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("keep\n")
    if entry == "file":
        target.write_text("a file of the user's\n")
    else:
        target.symlink_to(elsewhere if entry == "symlink-to-folder" else tmp_path / "nowhere")
    before = (os.readlink(target) if target.is_symlink() else target.read_text(), _snapshot(elsewhere))
    result = render_cli(out)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": warning: " not in line]
    assert errors[0].startswith("error: ") and "Traceback" not in result.stderr
    assert "move it away" in result.stderr
    assert (os.readlink(target) if target.is_symlink() else target.read_text(), _snapshot(elsewhere)) == before
    assert sorted(p.name for p in out.iterdir()) == [target.name]


def test_unusable_output_folders_are_usage_errors(tmp_path, render_cli):
    (tmp_path / "file").write_text("x")
    cases = {
        tmp_path / "missing" / "out": "missing does not exist",
        tmp_path / "file" / "out": "file is not a folder",
        tmp_path / "file": "is a file",  # click's own check
        tmp_path / ("x" * 300): "file name too long",
    }
    for out, message in cases.items():
        result = render_cli(out)
        assert result.returncode == 2 and message in result.stderr, (out, result.stderr)
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_read_only_output_folder_is_a_usage_error(tmp_path, render_cli):
    out = tmp_path / "out"
    out.mkdir()
    # root ignores permission bits; the immutable attribute binds root too (ext4, xfs, btrfs)
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not supported here")
    else:
        out.chmod(0o555)
    try:
        result = render_cli(out)
    finally:
        subprocess.run(["chattr", "-i", str(out)], capture_output=True)
        out.chmod(0o755)
    assert result.returncode == 2 and "cannot write" in result.stderr and "nothing was changed" in result.stderr
    assert list(out.iterdir()) == []


def test_modes_do_not_follow_the_umask(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "vllmgen", "render", str(RAY), "-o", str(out)],
                            capture_output=True, text=True, preexec_fn=lambda: os.umask(0o077))
    assert result.returncode == 0, result.stderr
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    for path, mode in modes.items():
        expected = 0o755 if path in ("", ".") or Path(out, path).is_dir() or path.endswith(".sh") else 0o644
        assert mode == expected, (path, oct(mode))


def test_without_renameat2_or_flock_the_writer_still_works(tmp_path, monkeypatch, trees):
    import errno

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")  # NFS, for a folder

    monkeypatch.setattr(swap, "_renameat2", None)  # not Linux, or a libc without it
    monkeypatch.setattr(fcntl, "flock", no_flock)
    target = tmp_path / "out" / "d"
    write(trees[0][0], target)
    (target / "NOTES.md").write_text("ours\n")
    write(trees[1][0], target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["d"]
    assert all((target / a.path).read_bytes() == a.data for a in trees[1][0])
    assert (target / "NOTES.md").read_text() == "ours\n" and not (target / "serve.sh").exists()
    with pytest.raises(FileExistsError):
        swap.rename_new(str(tmp_path), str(target))  # never onto an existing path


def test_user_entries_are_carried_as_they_are(tmp_path, trees):
    target = tmp_path / "out" / "d"
    write(trees[0][0], target)
    (target / "private.env").write_text("x=1\n")
    (target / "private.env").chmod(0o600)
    (target / "link").symlink_to("/etc/hostname")  # carried as a link, never as the file it names
    (target / "dangling").symlink_to(tmp_path / "nowhere")
    (target / "linked-dir").symlink_to(tmp_path)
    (target / "empty").mkdir()
    write(trees[1][0], target)
    assert stat.S_IMODE((target / "private.env").stat().st_mode) == 0o600
    assert os.readlink(target / "link") == "/etc/hostname"
    assert os.readlink(target / "dangling") == str(tmp_path / "nowhere")
    assert os.readlink(target / "linked-dir") == str(tmp_path)
    assert (target / "empty").is_dir()
