"""The revision and path rules that the queue and the grading server share."""

from __future__ import annotations

import pytest

from gradercommon.taskrules import REVISION_MAX, is_revision, job_paths, lies_within

REVISIONS = ["", "HEAD~1", "v1.2", "release/2024", "main^2", "a1b2c3d", "_x", "x" * REVISION_MAX]
NOT_REVISIONS = ["--orphan=x", "-b", ".hidden", "HEAD;rm -rf /", "a b", "$(id)", "a\nb"]


@pytest.mark.parametrize("revision", REVISIONS)
def test_revisions_that_look_like_revisions_pass(revision):
    assert is_revision(revision)


@pytest.mark.parametrize("revision", [*NOT_REVISIONS, "x" * (REVISION_MAX + 1)])
def test_anything_else_never_reaches_the_prepare_command(revision):
    assert not is_revision(revision)


def test_job_paths_are_the_task_path_and_the_solution_path():
    job = {"taskPath": "/t", "extraParams": {"solutionPath": "/s", "other": "/o"}}
    assert job_paths(job) == [("taskPath", "/t"), ("solutionPath", "/s")]


@pytest.mark.parametrize(
    "job",
    [
        {},
        {"taskPath": None, "extraParams": {"solutionPath": None}},
        {"taskPath": "", "extraParams": {"solutionPath": ""}},
        {"extraParams": "solutionPath"},
        {"extraParams": ["/s"]},
    ],
)
def test_absent_null_or_empty_fields_name_no_path(job):
    assert job_paths(job) == []


def test_values_that_are_not_strings_are_kept_for_the_caller_to_refuse():
    assert job_paths({"taskPath": 3, "extraParams": {"solutionPath": ["/s"]}}) == [
        ("taskPath", 3),
        ("solutionPath", ["/s"]),
    ]


@pytest.mark.parametrize(
    ("path", "root"),
    [
        ("/srv/tasks/A", "/srv/tasks/A"),
        ("/srv/tasks/A/x", "/srv/tasks/A"),
        ("/srv/tasks/A/x", "/srv/tasks/A/"),
        ("/anything", "/"),
        ("$ROOT_PATH/tasks/A/x", "$ROOT_PATH/tasks/A"),
    ],
)
def test_a_path_lies_within_its_root(path, root):
    assert lies_within(path, root)


@pytest.mark.parametrize(
    ("path", "root"),
    [
        ("/srv/tasks/AB", "/srv/tasks/A"),
        ("/srv/tasks", "/srv/tasks/A"),
        ("/srv/tasks/B", "/srv/tasks/A"),
        ("$ROOT_PATH/tasks/A", "/srv"),
    ],
)
def test_a_path_beside_or_above_the_root_does_not(path, root):
    assert not lies_within(path, root)
