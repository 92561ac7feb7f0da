"""`graderqueue import-legacy-config` on a PHP queue's config.inc.php, through the real CLI.

The imported key must be the very key platforms encrypt to: a platform that
keeps its old settings (the old key name in the JWE ``kid``) sends a job to
the new queue, served by gunicorn, and it is accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from graderqueue.client import PlatformClient
from graderqueue.config import load_settings
from graderqueue.protocol.keys import generate_rsa_pem
from harness.processes import Gunicorn, run_cli

OLD_KEY_NAME = "graderqueue.pem.dev"
SECRETS = ("Db-Pa$$w0rd", "debug-let-me-in", "AKIAEXAMPLESECRET")

CONFIG_TEMPLATE = """<?php
// Configuration of the graderqueue (copied from config.inc.php.dist).

$CFG_db_hostname = "127.0.0.1";
$CFG_db_user = "graderqueue";
$CFG_db_password = "Db-Pa\\$\\$w0rd";
$CFG_db_database = 'graderqueue';

$CFG_max_fails = 3;
$CFG_wakeup_strategy = 'last'; # busy servers stay busy

$CFG_key_name = 'graderqueue.pem.dev';
$CFG_private_key = "PRIVATE";
$CFG_public_key = "PUBLIC";
$CFG_debug_password = "debug-let-me-in";

$CFG_admin_email = array('ops@example.org', "teacher@example.org");
$CFG_interface_url = 'https://queue.example.org/graderqueue/';
$CFG_keep_old_days = 10;
$CFG_warn_seconds = 45;
$CFG_warn_nb = 12;
$CFG_accept_interface_tokens = false;
$CFG_res_per_page = 25;

/* Extensions of the files sendsolution writes,
   by language. */
$CFG_defaultexts = array(
    '[default]' => '.sh',
    'c' => '.c',
    'cpp' => '.cpp',
    'python' => '.py',
    'javascool' => '.jvs',
);
$CFG_defaultbutton = 'Python test';
$CFG_buttons = [
    'Python test' => ['tags' => 'python', 'jobdata' => '{"taskPath": "\\/tasks\\/test"}'],
];
$CFG_stat_intervals = array(
    array('caption' => 'Last hour', 'duration' => 3600, 'tick' => 60),
    array('caption' => 'Last day', 'duration' => 86400, 'tick' => 3600),
);
$CFG_aws_credentials = array('key' => 'AKIAEXAMPLE', 'secret' => 'AKIAEXAMPLESECRET');
$CFG_aws_autoscaling_group = 'graders-general';
$CFG_autoscaling_ratio_burst = 1.4;
$CFG_autoscaling_ratio_long = 1.7;
$CFG_autoscaling_minutes_downscale = 20;
?>
"""


def php_config(private_pem: str, public_pem: str) -> str:
    # As the PHP file holds them: PEM text inline, over several lines, in double quotes.
    return CONFIG_TEMPLATE.replace('"PRIVATE"', f'"{private_pem}"').replace(
        '"PUBLIC"', f'"{public_pem}"'
    )


@pytest.fixture(scope="module")
def old_key() -> tuple[str, str]:
    """The PHP queue's pair; openssl wrote PKCS#1 ("BEGIN RSA PRIVATE KEY") then."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@pytest.fixture
def legacy_file(tmp_path: Path, old_key: tuple[str, str]) -> Path:
    path = tmp_path / "config.inc.php"
    path.write_text(php_config(*old_key))
    return path


# The operator's environment names no settings file: the command writes one.
BARE = {"GRADERQUEUE_CONFIG": None, "GRADERQUEUE_INSTANCE_PATH": None}


def import_config(path: Path, *extra: str, check: bool = True):  # type: ignore[no-untyped-def]
    return run_cli(["import-legacy-config", str(path), *extra], env=BARE, check=check)


def assert_no_secret(text: str, old_key: tuple[str, str]) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert "PRIVATE KEY" not in text
    assert old_key[0].splitlines()[3] not in text  # a line of the private key's body


def test_settings_key_and_a_platform_that_changes_nothing(tmp_path, legacy_file, old_key):
    instance = tmp_path / "inst"
    done = import_config(legacy_file, "--instance", str(instance))
    assert_no_secret(done.stdout, old_key)
    assert "WARNING: debug_password carried over" in done.stderr
    unmapped = ["interface_url", "accept_interface_tokens", "res_per_page", "defaultbutton"]
    unmapped += ["buttons", "stat_intervals", "aws_credentials", "aws_autoscaling_group"]
    for name in unmapped:
        assert f"$CFG_{name}: no equivalent" in done.stdout
    assert "aws-asg.py" in done.stdout

    toml = instance / "graderqueue.toml"
    assert toml.stat().st_mode & 0o777 == 0o600
    settings = load_settings(environ={"GRADERQUEUE_CONFIG": str(toml)})
    assert settings.instance_path == instance.resolve()
    assert settings.database_url == ""  # the old database only in a comment
    assert "mysql+pymysql://graderqueue:Db-Pa%24%24w0rd@127.0.0.1/graderqueue" in toml.read_text()
    assert (settings.key_name, settings.max_fails, settings.wakeup_strategy) == (
        OLD_KEY_NAME, 3, "last",
    )  # fmt: skip
    assert settings.admin_emails == ("ops@example.org", "teacher@example.org")
    assert (settings.keep_old_days, settings.warn_seconds, settings.warn_nb) == (10, 45, 12)
    assert settings.lang_extensions == {
        "[default]": ".sh", "c": ".c", "cpp": ".cpp", "python": ".py", "javascool": ".jvs",
    }  # fmt: skip
    assert (settings.autoscale_burst_ratio, settings.autoscale_long_ratio) == (1.4, 1.7)
    assert settings.autoscale_scale_down_delay_sec == 1200
    assert settings.debug_password == "debug-let-me-in"

    key_dir = instance / "keys"
    for name in (f"{OLD_KEY_NAME}.pem", f"{OLD_KEY_NAME}.pub.pem"):
        assert (key_dir / name).stat().st_mode & 0o777 == 0o600
    assert (key_dir / f"{OLD_KEY_NAME}.pub.pem").read_text() == old_key[1]

    # The operator's next steps: init keeps the key, then the registry.
    env = {"GRADERQUEUE_CONFIG": str(toml), "GRADERQUEUE_INSTANCE_PATH": None}
    assert f"Queue key '{OLD_KEY_NAME}' kept" in run_cli(["init"], env=env).stdout
    assert run_cli(["keys", "show"], env=env).stdout == f"Key name: {OLD_KEY_NAME}\n{old_key[1]}"
    platform_private, platform_public = generate_rsa_pem()
    (tmp_path / "plat.pub.pem").write_bytes(platform_public)
    run_cli(["tag", "add", "python"], env=env)
    run_cli(["type", "add", "general", "--tags", "python"], env=env)
    run_cli(["platform", "add", "plat", "--public-key", str(tmp_path / "plat.pub.pem")], env=env)

    # A platform still configured for the PHP queue: its public key, its key name.
    with Gunicorn(env=env, workers=1, threads=2) as server:
        client = PlatformClient(
            server.url, "plat", platform_private.decode(), old_key[1], queue_key_name=OLD_KEY_NAME
        )
        job_id = client.sendjob({"taskPath": "/tasks/test"}, jobname="old-platform", tags="python")
    assert f"{job_id}\t" in run_cli(["job", "list"], env=env).stdout


def test_malformed_php_is_reported_with_its_line_and_nothing_is_written(tmp_path, old_key):
    text = php_config(*old_key).replace(
        "$CFG_warn_nb = 12;", "$CFG_warn_nb = 12;\n$CFG_x = getenv('GQ_X');"
    )
    path = tmp_path / "config.inc.php"
    path.write_text(text)
    line = text.splitlines().index("$CFG_x = getenv('GQ_X');") + 1
    failed = import_config(path, "--instance", str(tmp_path / "inst"), check=False)
    assert failed.returncode == 1
    assert f"line {line}: cannot read the value 'getenv'" in failed.stderr
    assert_no_secret(failed.stdout + failed.stderr, old_key)
    assert not (tmp_path / "inst").exists()


def test_dry_run_shows_the_settings_without_secrets_and_writes_nothing(
    tmp_path, legacy_file, old_key
):
    shown = import_config(legacy_file, "--instance", str(tmp_path / "inst"), "--dry-run")
    assert "max_fails = 3" in shown.stdout and 'key_name = "graderqueue.pem.dev"' in shown.stdout
    assert 'debug_password = "<hidden>"' in shown.stdout
    assert "graderqueue:<hidden>@127.0.0.1" in shown.stdout
    assert_no_secret(shown.stdout, old_key)
    assert not (tmp_path / "inst").exists()


def test_an_existing_settings_file_or_another_key_is_never_replaced(tmp_path, legacy_file):
    instance = tmp_path / "inst"
    import_config(legacy_file, "--instance", str(instance))
    toml = instance / "graderqueue.toml"
    toml.write_text("# the operator's edits\n")
    again = import_config(legacy_file, "--instance", str(instance), check=False)
    assert again.returncode == 1 and "give --force" in again.stderr
    assert toml.read_text() == "# the operator's edits\n"
    # The same key again is kept; --force rewrites the settings file.
    forced = import_config(legacy_file, "--instance", str(instance), "--force")
    assert f"Key '{OLD_KEY_NAME}' kept" in forced.stdout
    assert "max_fails = 3" in toml.read_text()

    other_private, other_public = generate_rsa_pem()
    (tmp_path / "other.php").write_text(
        CONFIG_TEMPLATE.replace('"PRIVATE"', f'"{other_private.decode()}"').replace(
            '"PUBLIC"', f'"{other_public.decode()}"'
        )
    )
    key_before = (instance / "keys" / f"{OLD_KEY_NAME}.pem").read_bytes()
    refused = import_config(tmp_path / "other.php", "--instance", str(instance), "--force",
                            check=False)  # fmt: skip
    assert refused.returncode == 1 and "holds another key" in refused.stderr
    assert (instance / "keys" / f"{OLD_KEY_NAME}.pem").read_bytes() == key_before
    assert "max_fails = 3" in toml.read_text()
