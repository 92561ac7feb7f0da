"""Reading config.inc.php without PHP, and mapping it onto this queue's settings."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graderqueue.legacy import config_import
from graderqueue.legacy.config_import import LegacyConfigError, plan_import, render_toml
from graderqueue.legacy.php_config import PhpConfigError, PhpValue, parse_php_config
from graderqueue.protocol.keys import generate_rsa_pem


def php_literal(value: PhpValue, double: bool = True) -> str:
    """*value* as PHP source, written the way PHP's own rules read it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if not double:
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
        return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'
    if isinstance(value, list):
        return "array(" + ", ".join(php_literal(v, double) for v in value) + ")"
    pairs = (f"{php_literal(k, double)} => {php_literal(v, double)}" for k, v in value.items())
    return "[" + ", ".join(pairs) + "]"


def parse(body: str) -> dict[str, PhpValue]:
    return parse_php_config("<?php\n" + body)


def problems(body: str) -> list[str]:
    with pytest.raises(PhpConfigError) as caught:
        parse(body)
    return [str(p) for p in caught.value.problems]


# -- strings -------------------------------------------------------------------------


def test_double_quoted_escapes_are_read_as_php_reads_them():
    assert parse(r'$a = "x\ny\tz\\w\"q\$v\r\e\f\v";') == {"a": 'x\ny\tz\\w"q$v\r\x1b\f\v'}
    assert parse(r'$a = "\101\x42\u{e9}\u{1F600}";') == {"a": "AB\u00e9\U0001f600"}
    # An escape PHP does not know keeps its backslash; a lone $ is just a dollar.
    assert parse(r'$a = "C:\dir\q $ 5$";') == {"a": "C:\\dir\\q $ 5$"}


def test_single_quoted_strings_know_only_two_escapes():
    assert parse(r"$a = 'it\'s \\ \n $x';") == {"a": "it's \\ \\n $x"}


def test_strings_span_lines_and_dots_join_them():
    text = "$k = \"-----BEGIN KEY-----\nAAA\nBBB\n-----END KEY-----\n\";\n$j = 'a' . \"b\" . 'c';"
    assert parse(text) == {"k": "-----BEGIN KEY-----\nAAA\nBBB\n-----END KEY-----\n", "j": "abc"}


def test_a_variable_inside_double_quotes_is_reported_at_its_own_line():
    assert problems('$a = 1;\n$b = "first\nsecond $CFG_x";\n$c = 2;') == [
        "line 4: a variable inside a double-quoted string is not read"
    ]
    inside = "line 2: a variable inside a double-quoted string is not read"
    assert problems('$b = "{$x}";') == problems('$b = "${x}";') == [inside]


def test_a_byte_escape_that_would_be_half_a_character_is_refused():
    assert problems(r'$a = "\xc3\xa9";') == ["line 2: a byte escape above \\x7f is not read"]


@given(st.text())
def test_any_text_round_trips_through_double_quotes(text):
    assert parse(f"$s = {php_literal(text)};") == {"s": text}


@given(st.text())
def test_any_text_round_trips_through_single_quotes(text):
    assert parse(f"$s = {php_literal(text, double=False)};") == {"s": text}


@given(st.text(alphabet="\\'\"$\n\t {}x"))
def test_quotes_backslashes_and_dollars_round_trip_both_ways(text):
    source = f"$a = {php_literal(text)};\n$b = {php_literal(text, double=False)};"
    assert parse(source) == {"a": text, "b": text}


# -- numbers, constants, arrays ------------------------------------------------------


def test_numbers_and_constants():
    source = "$a = 2; $b = -1; $c = 1.3; $d = .5; $e = 1e3; $f = 0x1F; $g = 010; $h = 1_000;"
    source += " $i = TRUE; $j = false; $k = Null; $l = +4;"
    assert parse(source) == {
        "a": 2, "b": -1, "c": 1.3, "d": 0.5, "e": 1000.0, "f": 31, "g": 8, "h": 1000,
        "i": True, "j": False, "k": None, "l": 4,
    }  # fmt: skip


def test_arrays_nested_with_keys_and_trailing_commas():
    source = """$CFG_defaultexts = array(
        '[default]' => '.sh',   // the fallback
        "javascool" => '.jvs',
    );
    $CFG_buttons = [['name' => 'ok', 'tags' => ['c', 'java']], array(), ];
    $mixed = array(5, 'x' => 1, 6, '7' => 'seven', 'a');
    """
    assert parse(source) == {
        "CFG_defaultexts": {"[default]": ".sh", "javascool": ".jvs"},
        "CFG_buttons": [{"name": "ok", "tags": ["c", "java"]}, []],
        "mixed": {0: 5, "x": 1, 1: 6, 7: "seven", 8: "a"},
    }


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(alphabet="abc_", min_size=1, max_size=4), inner, min_size=1)
        ),
        max_leaves=12,
    )
)
def test_nested_values_round_trip(value):
    # (An empty PHP array is a list here: PHP does not tell [] from an empty map.)
    assert parse(f"$v = {php_literal(value)};") == {"v": value}


def test_comments_and_php_tags_are_skipped():
    text = "<?php\n# one\n/* two\n$x = 1; */ $a = 1; // three ?>\n<?php $b = 2 ?>\n"
    assert parse_php_config(text) == {"a": 1, "b": 2}
    assert parse_php_config("\n<?php\n$a = 'x'; ?>") == {"a": "x"}


def test_a_later_assignment_wins_as_in_php():
    assert parse("$a = 1;\n$a = 2;") == {"a": 2}


# -- what is not read is reported with its line, never guessed -------------------------


QUOTED = "use a quoted string"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "$a = 1;\ndefine('X', 2);",
            ["line 3: only `$name = value;` is read, not a statement starting 'define'"],
        ),
        ("$a = foo();", ["line 2: cannot read the value 'foo'"]),
        ("$a = X;", ["line 2: cannot read the value 'X'"]),
        ("$a = [1 2];", ["line 2: expected ',' or ']' in an array, found 2"]),
        ("$a = 1 + 2;", ["line 2: expected ';' after the value, found '+'"]),
        ("$a = 'x' . 3;", ["line 2: '.' is read only between strings"]),
        ("\n\n$a = 1", ["line 4: statement not ended by ';'"]),
        ("$a = 'never closed;\n\n", ["line 2: string never closed (')"]),
        ("/* never closed", ["line 2: comment /* never closed"]),
        ("$a = <<<EOT\nx\nEOT;", ["line 2: heredoc/nowdoc strings (<<<) are not read: " + QUOTED]),
        ("$a = 1; ?>\nhello\n", ["line 3: text outside <?php ... ?>"]),
        ("$a = [true => 1];", ["line 2: an array key must be a string or an integer"]),
        ("$a = @;", ["line 2: unexpected character '@'"]),
        ("$a[] = 1;", ["line 2: expected '=' after $a, found '['"]),
    ],
)
def test_what_is_not_read_is_reported_with_its_line(body, expected):
    assert problems(body) == expected


def test_every_unread_statement_is_reported_and_never_a_string_s_text():
    found = problems('$a = f();\n$pw = "secret" . 1;\n$b = g();')
    assert found == [
        "line 2: cannot read the value 'f'",
        "line 3: '.' is read only between strings",
        "line 4: cannot read the value 'g'",
    ]
    assert "secret" not in " ".join(problems('$pw = "secret" "more";'))


# -- mapping onto settings -----------------------------------------------------------


@pytest.fixture(scope="module")
def key_pem() -> tuple[str, str]:
    private, public = generate_rsa_pem()
    return private.decode(), public.decode()


def legacy(key_pem: tuple[str, str], **extra: PhpValue) -> dict[str, PhpValue]:
    values: dict[str, PhpValue] = {
        "CFG_db_hostname": "db.local",
        "CFG_db_user": "gq",
        "CFG_db_password": "p@ss:w/rd",
        "CFG_db_database": "graderqueue",
        "CFG_key_name": "graderqueue.pem.dev",
        "CFG_private_key": key_pem[0],
        "CFG_public_key": key_pem[1],
    }
    values.update({f"CFG_{k}": v for k, v in extra.items()})
    return values


def loaded(plan: config_import.ImportPlan) -> dict[str, Any]:
    return tomllib.loads(render_toml(plan, "config.inc.php"))


EXTENSIONS = {"[default]": ".sh", "javascool": ".jvs"}


def test_settings_map_with_their_types(key_pem):
    values = legacy(
        key_pem, max_fails=3, wakeup_strategy="last", admin_email="ops@example.org",
        keep_old_days=14, warn_seconds=30, warn_nb=5, defaultexts=EXTENSIONS,
        autoscaling_ratio_burst=2, autoscaling_ratio_long=1.8, autoscaling_minutes_downscale=45,
    )  # fmt: skip
    plan = plan_import(values, Path("/srv/gq"))
    assert loaded(plan) == {
        "instance_path": "/srv/gq", "key_name": "graderqueue.pem.dev", "max_fails": 3,
        "wakeup_strategy": "last", "admin_emails": ["ops@example.org"], "keep_old_days": 14,
        "warn_seconds": 30, "warn_nb": 5, "lang_extensions": EXTENSIONS,
        "autoscale_burst_ratio": 2.0, "autoscale_long_ratio": 1.8,
        "autoscale_scale_down_delay_sec": 2700,
    }  # fmt: skip
    # The old database is written commented out: an operator must choose the new one.
    text = render_toml(plan, "config.inc.php")
    assert "# database_url = " in text
    assert plan.old_database_url == (
        "mysql+pymysql://gq:p%40ss%3Aw%2Frd@db.local/graderqueue?charset=utf8mb4"
    )


def test_admin_email_may_be_an_array(key_pem):
    plan = plan_import(legacy(key_pem, admin_email=["a@x.org", "b@x.org"]), Path("/i"))
    assert plan.settings["admin_emails"] == ["a@x.org", "b@x.org"]


def test_wrong_types_and_values_are_refused_all_at_once(key_pem):
    values = legacy(key_pem, max_fails="2", wakeup_strategy="random", admin_email=[1],
                    autoscaling_ratio_burst=True, defaultexts=["x", 2])  # fmt: skip
    with pytest.raises(LegacyConfigError) as caught:
        plan_import(values, Path("/i"))
    assert caught.value.problems == [
        "$CFG_max_fails: not an integer",
        "$CFG_admin_email: not a string or an array of strings",
        "$CFG_defaultexts: not an array of strings",
        "$CFG_autoscaling_ratio_burst: not a number",
        "$CFG_wakeup_strategy: must be 'first' or 'last'",
    ]


def test_the_key_pair_must_be_there_and_match(key_pem):
    _, other_public = generate_rsa_pem()
    for values, message in [
        ({**legacy(key_pem), "CFG_private_key": None}, "$CFG_private_key: missing"),
        ({**legacy(key_pem), "CFG_private_key": "-----BEGIN nonsense"}, "not an unencrypted PEM"),
        ({**legacy(key_pem), "CFG_public_key": other_public.decode()}, "does not match"),
    ]:
        with pytest.raises(LegacyConfigError) as caught:
            plan_import(values, Path("/i"))
        assert message in str(caught.value)
        assert "PRIVATE" not in str(caught.value)


def test_what_has_no_equivalent_is_listed_by_name_only(key_pem):
    values = legacy(
        key_pem, interface_url="https://gq/", accept_interface_tokens=True, res_per_page=10,
        defaultbutton="x", buttons=[], stat_intervals=[], aws_credentials={"secret": "AWSSECRET"},
        aws_autoscaling_group="graders", something_else="zzz", debug_password="DEBUGPW",
    )  # fmt: skip
    values["helper"] = "not configuration"
    plan = plan_import(values, Path("/i"))
    listed = "\n".join(plan.notes + plan.warnings)
    for name in ("interface_url", "accept_interface_tokens", "res_per_page", "defaultbutton",
                 "buttons", "stat_intervals", "aws_credentials", "aws_autoscaling_group",
                 "something_else"):  # fmt: skip
        assert f"$CFG_{name}:" in listed
    assert "$helper: not a $CFG_ variable" in listed
    assert "autoscale --hook" in listed and "aws-asg.py" in listed
    assert "WARNING: debug_password carried over" in listed
    shown = render_toml(plan, "config.inc.php", redact=True) + listed
    for secret in ("AWSSECRET", "DEBUGPW", "p@ss", "p%40ss", "PRIVATE KEY"):
        assert secret not in shown
    assert loaded(plan)["debug_password"] == "DEBUGPW"  # carried over, in the 0600 file only


@given(st.text())
def test_any_setting_text_survives_toml(text):
    plan = config_import.ImportPlan(settings={"k": text, "t": {text: text}, "l": [text]}, key=None)  # type: ignore[arg-type]
    assert tomllib.loads(render_toml(plan, "x")) == {"k": text, "t": {text: text}, "l": [text]}


def test_the_written_settings_load_as_queue_settings(key_pem, tmp_path):
    from graderqueue.config import load_settings

    plan = plan_import(legacy(key_pem, max_fails=4, defaultexts={"py": ".py"}), tmp_path)
    path = tmp_path / "graderqueue.toml"
    config_import.write_settings(path, render_toml(plan, "config.inc.php"), force=False)
    assert path.stat().st_mode & 0o777 == 0o600
    settings = load_settings(environ={"GRADERQUEUE_CONFIG": str(path)})
    assert (settings.max_fails, settings.key_name) == (4, "graderqueue.pem.dev")
    assert settings.lang_extensions == {"py": ".py"}
    with pytest.raises(LegacyConfigError, match="--force"):
        config_import.write_settings(path, "x = 1\n", force=False)
