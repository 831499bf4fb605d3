"""Student code cannot cheat the grader: it cannot import the reference or the grader, cannot
stretch its time limits by rewriting the progress file, and cannot leave processes behind that
tamper with the results. Each fixture student here passed or escaped before these defences."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from cs231n_grader import engine, runner, sandbox, submission

STUDENTS = os.path.join(os.path.dirname(__file__), "fixtures", "students")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _grade(path, timeout=5.0, **kw):
    with submission.load([path]) as sub:
        results = engine.grade(sub, runner.Limits(timeout, 1024), jobs=2, **kw)
    return {r.name: r for r in results}


def test_student_cannot_import_the_reference_or_the_grader():
    res = _grade(os.path.join(STUDENTS, "imports_reference"))
    # The cheat (swap in numpy_impl's affine layer) fails, so the student's own bug shows.
    assert res["affine_forward"].verdict == "fail", res["affine_forward"].hint
    assert res["affine_backward"].verdict == "fail"
    # relu_forward is right only when no package of the project, no PYTHONPATH and no project
    # working directory is within reach of the student's process.
    assert res["relu_forward"].verdict == "pass", res["relu_forward"].details
    assert res["relu_backward"].verdict == "pass"


def test_loose_files_still_get_reference_stand_ins(tmp_path):
    """A lone fc_net.py imports layers it did not submit: those come from the reference, while
    the student's own imports of numpy_impl stay blocked."""
    src = os.path.join(STUDENTS, "correct", "cs231n", "classifiers", "fc_net.py")
    cheat = tmp_path / "fc_net.py"
    cheat.write_text(open(src).read() + "\nimport numpy_impl.layers\n")
    with submission.load([str(cheat)]) as sub:
        assert "cs231n.layers" in sub.standins
        results = engine.grade(sub, runner.Limits(10.0, 1024), only=["TwoLayerNet*"])
    assert {r.verdict for r in results} == {"error"}
    assert "numpy_impl.layers" in results[0].hint and "not available" in results[0].hint


def test_progress_file_cannot_extend_the_time_limit():
    start = time.monotonic()
    res = _grade(os.path.join(STUDENTS, "progress_dodge"), timeout=0.5)
    elapsed = time.monotonic() - start
    # relu_backward rewrites the progress file for 40 s; the item's hard limit (7 calls x 0.5 s
    # once the calls start) stops it long before.
    assert elapsed < 20, f"graded for {elapsed:.0f} s: the progress file extended the limit"
    assert res["relu_backward"].verdict == "timeout"
    assert "hard limit" in res["relu_backward"].hint
    assert res["relu_forward"].verdict == "pass"


def test_time_budget_stops_the_whole_run():
    start = time.monotonic()
    res = _grade(os.path.join(STUDENTS, "infinite_loop"), timeout=30.0, time_budget=3.0)
    assert time.monotonic() - start < 15
    assert res["relu_backward"].verdict == "timeout"
    assert "time budget" in res["relu_backward"].hint


def test_hard_limit_is_fixed_before_the_child_starts():
    job = {
        "driver": "layer",
        "spec": {"repeat": False, "backward": "relu_backward"},
        "module": "cs231n.layers",
        "cases": [{"args": []}, {"args": [], "backward": False}],
    }
    # The import, two forwards, one backward (the second case has none).
    assert runner.call_count(job) == 4
    assert runner.hard_limit(job, runner.Limits(2.0)) == 8.0
    job["spec"]["repeat"] = True  # dropout's forward runs twice per case
    assert runner.call_count(job) == 6


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process tree via /proc")
def test_detached_processes_die_and_cannot_rewrite_results(tmp_path):
    student = tmp_path / "student"
    shutil.copytree(os.path.join(STUDENTS, "detached"), student)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cs231n_grader",
            str(student),
            "--format",
            "gradescope",
            "-o",
            "results.json",
            "--only",
            "relu_*",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    time.sleep(3.0)  # the escaped process would have written its marker after 2 s
    marker = student / "cs231n" / "escaped.txt"
    if marker.exists():
        pid = int(marker.read_text() or 0)
        if pid and _alive(pid):
            os.kill(pid, 9)
        pytest.fail("a process started by student code outlived its job")
    doc = json.loads((work / "results.json").read_text())
    assert doc["score"] == 2 and {t["name"] for t in doc["tests"]} == {
        "relu_forward",
        "relu_backward",
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process tree via /proc")
def test_end_job_kills_a_double_forked_grandchild(tmp_path):
    with sandbox.Harness() as harness:
        jobdir = harness.job_dir()
        token = sandbox.new_token()
        pidfile = tmp_path / "pid"
        grandchild_code = tmp_path / "grandchild.py"
        grandchild_code.write_text(
            "import os, sys, time\n"
            "if os.fork():\n    os._exit(0)  # orphan the grandchild\n"
            "os.setsid()\n"
            "with open(sys.argv[1], 'w') as f:\n    f.write(str(os.getpid()))\n"
            "time.sleep(60)\n"
        )
        script = tmp_path / "spawn.py"
        script.write_text(
            "import subprocess, sys, time\n"
            "from nn_twins_harness import seal\n"
            "seal.set_subreaper()\n"
            f"subprocess.Popen([sys.executable, {str(grandchild_code)!r}, {str(pidfile)!r}], "
            "env={})\n"
            "time.sleep(60)\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-s", str(script)],
            cwd=jobdir,
            env={**sandbox.child_env(jobdir, token), "PYTHONPATH": harness.dir},
            start_new_session=True,
        )
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text():
                break
            time.sleep(0.05)
        grandchild = int(pidfile.read_text())
        assert _alive(grandchild)
        sandbox.end_job(proc, token)
        time.sleep(0.2)
        assert not _alive(grandchild)
        shutil.rmtree(jobdir, ignore_errors=True)


def test_child_environment_is_an_allow_list(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ROOT)
    monkeypatch.setenv("NN_TWINS_SECRET", "x")
    env = sandbox.child_env("/tmp/job", "tok")
    assert "PYTHONPATH" not in env and "NN_TWINS_SECRET" not in env
    assert env["HOME"] == "/tmp/job" and env[sandbox.TOKEN_VAR] == "tok"


def test_student_user_errors():
    with pytest.raises(sandbox.StudentUserError, match="no user named 'no-such-user-x'"):
        sandbox.student_user("no-such-user-x")
    assert sandbox.student_user(None) is None
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        with pytest.raises(sandbox.StudentUserError, match="needs the grader to run as root"):
            sandbox.student_user("nobody")


def _usable_student_user():
    try:
        return sandbox.student_user("nobody")
    except (sandbox.StudentUserError, OSError):
        return None


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="dropping to another user needs root"
)
def test_student_code_runs_as_the_student_user():
    user = _usable_student_user()
    if user is None:
        pytest.skip("user nobody cannot run this Python (e.g. it lives under /root)")
    with submission.load([os.path.join(STUDENTS, "unprivileged")]) as sub:
        res = {
            r.name: r
            for r in engine.grade(sub, runner.Limits(10.0, 1024), jobs=2, student_user=user)
        }
    assert res["relu_forward"].verdict == "pass", res["relu_forward"].details
    assert res["relu_backward"].verdict == "pass"


def test_seal_blocks_names_but_keeps_installed_packages(tmp_path):
    """The seal refuses the project's names wherever they are, drops a checkout from sys.path,
    and keeps site-packages even when the project is installed there (a wheel)."""
    site = tmp_path / "lib" / "site-packages"
    checkout = tmp_path / "checkout"
    for root in (site, checkout):
        (root / "numpy_impl").mkdir(parents=True)
        (root / "numpy_impl" / "__init__.py").write_text("")
    (site / "other_pkg.py").write_text("VALUE = 7\n")
    script = (
        "import sys\n"
        f"sys.path[:0] = [{str(checkout)!r}, {str(site)!r}]\n"
        "from nn_twins_harness import seal\n"
        "seal.seal()\n"
        f"assert {str(checkout)!r} not in sys.path and {str(site)!r} in sys.path\n"
        "import other_pkg\n"
        "assert other_pkg.VALUE == 7\n"
        "for name in ('numpy_impl', 'numpy_impl.layers', 'torch_impl', 'cs231n_grader'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        assert 'not available to student code' in str(exc), exc\n"
        "    else:\n"
        "        raise AssertionError(name + ' was importable')\n"
        "print('sealed')\n"
    )
    with sandbox.Harness() as harness:
        proc = subprocess.run(
            [sys.executable, "-s", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            env={**sandbox.child_env(str(tmp_path), "t"), "PYTHONPATH": harness.dir},
        )
    assert proc.returncode == 0 and "sealed" in proc.stdout, proc.stderr
