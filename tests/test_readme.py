"""README.md stays true: its commands are the ones CI runs, its settings table is generated
from Settings, and every metric /metrics serves and every default alert is documented."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from auditq.alerts.defaults import DEFAULT_RULES
from auditq.config import Settings, env_name, load_settings
from dashboard import create_app

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
RUN_COMMAND = "pip install -r requirements.txt && python -m auditq dev"
TEST_COMMAND = "./scripts/install-test-deps && python -m pytest"


def settings_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "settings_table", REPO / "scripts" / "settings_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.DOTALL)


def test_the_run_and_test_commands_are_in_the_readme_exactly() -> None:
    blocks = [block.strip() for block in code_blocks(README)]
    assert RUN_COMMAND in blocks
    assert TEST_COMMAND in blocks


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in [line.strip() for line in ci]


def test_every_setting_is_in_the_readme() -> None:
    missing = [
        env_name(field) for field in Settings.model_fields if f"`{env_name(field)}`" not in README
    ]
    assert not missing, f"run: python scripts/settings_table.py --write ({missing})"


def test_the_settings_table_is_the_generated_one() -> None:
    module = settings_table()
    assert module.replace_in(README, module.render()) == README, (
        "README.md's settings table is stale: python scripts/settings_table.py --write"
    )


def test_every_metric_served_is_documented(redis_url: str, pg_dsn: str) -> None:
    settings = load_settings(
        redis_url=redis_url,
        database_url=pg_dsn,
        secret_key="readme-test-secret-key",
        dashboard_password="readme-test-password",
        metrics_token="readme-test-token",
        alerts_in_web=False,  # no background alert evaluator left running after the test
    )
    client = create_app(settings).test_client()
    response = client.get("/metrics", headers={"Authorization": "Bearer readme-test-token"})
    assert response.status_code == 200
    families = re.findall(r"^# TYPE (\S+) (\S+)$", response.get_data(as_text=True), re.MULTILINE)
    assert families
    # A counter is exposed (and documented) with its _total suffix.
    names = [
        f"{name}_total" if kind == "counter" and not name.endswith("_total") else name
        for name, kind in families
    ]
    undocumented = [name for name in names if f"`{name}" not in README]
    assert not undocumented, f"add to README.md's Metrics section: {undocumented}"


def test_every_default_alert_is_explained() -> None:
    for rule in DEFAULT_RULES:
        assert f"| {rule['name']} |" in README, rule["name"]
