"""nn-twins-grade: score a student's CS231n code against the reference (``numpy_impl``).

Point it at an assignment directory (the course's ``cs231n/`` layout) or at single files; for
every function pair, loss, optimizer and model class of its assignment's profile (or, without
one, every one it finds with a counterpart in the reference), it runs both on the same seeded
inputs, compares every output and gradient with CS231n's ``rel_error``, and explains
disagreements ("your forward is right, your dx is off by a factor of N"). Student code runs in
child processes that cannot import the reference, under time limits the student cannot
extend and a memory cap, and every process it starts dies with its job (``sandbox.py``).

    nn-twins-grade path/to/assignment2               # a table
    nn-twins-grade submission/ --format gradescope   # results.json for Gradescope
    python -m cs231n_grader --list                    # what can be graded

Python API: ``grade_paths(paths, ...)`` returns the list of ``TestResult``.
"""

from cs231n_grader._version import __version__  # noqa: F401


def grade_paths(
    paths,
    timeout=None,
    memory_mb=None,
    seed=231,
    jobs=1,
    only=None,
    assignment="auto",
    time_budget=None,
    student_user=None,
):
    """Grade the student code at ``paths`` (see ``submission.load``); returns TestResults.

    ``assignment``: '1', '2', '3' (that assignment's profile), 'auto' (tell from the files) or
    'all' (every function with a counterpart in the reference); ``student_user``: a user name
    to run student code as (the grader must be root). See ``nn-twins-grade --help``.
    """
    from cs231n_grader import engine, profiles, runner, sandbox, submission
    from cs231n_grader.thresholds import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S

    limits = runner.Limits(
        timeout if timeout is not None else DEFAULT_TIMEOUT_S,
        memory_mb if memory_mb is not None else DEFAULT_MEMORY_MB,
    )
    user = sandbox.student_user(student_user)
    with submission.load(paths) as sub:
        profile, _ = profiles.choose(assignment, sub.modules)
        return engine.grade(
            sub,
            limits,
            seed=seed,
            jobs=jobs,
            only=only,
            time_budget=time_budget,
            student_user=user,
            profile=profile,
        )
