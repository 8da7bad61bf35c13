"""The stage registry is the one list of analyses: the schema, the config, the rules, the readers and the API agree
with it (netdyn/stages/__init__.py, docs/adding-an-analysis.md)."""

from __future__ import annotations

import importlib
import re

from netdyn.config import ANALYSIS_DEFAULTS, DUMP_ANALYSES
from netdyn.stages import ANALYSES, RUN_TABLES, STAGES, outputs
from netdyn.tables import RunTables
from tests.conftest import ROOT


def test_the_schema_lists_the_registrys_analyses():
    schema = (ROOT / "schemas" / "config.schema.yaml").read_text()
    enums = re.findall(r"items: \{enum: \[([^\]]*)\]\}", schema)
    assert enums, "schemas/config.schema.yaml: no analysis enum found"
    for enum in enums:
        assert [name.strip() for name in enum.split(",")] == list(ANALYSES)


def test_every_stage_has_a_runner_a_rule_with_its_outputs_and_known_settings():
    rules = (ROOT / "rules" / "analysis.smk").read_text()
    for name, stage in STAGES.items():
        assert callable(importlib.import_module(f"netdyn.stages.{name}").run), name
        block = re.search(rf"rule analyse_{name}:\n(.*?)(?=\n\nrule |\Z)", rules, re.S)
        assert block, f"rules/analysis.smk: no rule analyse_{name}"
        text = block.group(1)
        assert f'stage_inputs("{name}")' in text and f'stage_params("{name}")' in text, name
        output = re.search(r"output:\n(.*?)\n    log:", text, re.S).group(1)
        assert sorted(re.findall(r"(\w+)=", output)) == sorted(outputs(name)), name
        assert set(stage.settings) <= set(ANALYSIS_DEFAULTS), f"{name}: settings without a default"
        assert ("gpu=1" in text) == stage.uses_gpu, f"rule analyse_{name}: gpu resource vs uses_gpu"
    assert DUMP_ANALYSES == tuple(name for name, stage in STAGES.items() if stage.reads_fields)
    assert set(RUN_TABLES) <= set(RunTables._fields)


def test_rules_exist_only_for_registered_stages():
    rules = (ROOT / "rules" / "analysis.smk").read_text()
    assert set(re.findall(r"^rule analyse_(\w+):", rules, re.M)) == set(STAGES)
