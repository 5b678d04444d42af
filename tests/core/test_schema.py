"""Tests for the per-channel metadata schema subset (contract §3.12)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.core import schema as schema_module
from backchannel.core.schema import MAX_DEPTH, schema_problems, validate_metadata


def v(field: str, issue: str) -> dict[str, str]:
    return {"field": field, "issue": issue}


# --- empty and non-JSON-Schema-like schemas -------------------------------------------------


@pytest.mark.parametrize("metadata", [{}, {"a": 1}, [], "x", 3, 2.5, True, None])
def test_empty_schema_validates_everything(metadata: Any) -> None:
    assert validate_metadata({}, metadata) == []


@pytest.mark.parametrize(
    "schema",
    [
        {"severity": "string"},
        {"properties": {"severity": "string"}},
        {"properties": {"severity": ["string"]}},
        {"properties": ["severity"]},
        {"properties": None},
    ],
)
def test_non_dict_schema_nodes_are_ignored(schema: dict[str, Any]) -> None:
    assert validate_metadata(schema, {"severity": 5}) == []


def test_unknown_keywords_are_ignored() -> None:
    schema = {
        "type": "object",
        "properties": {"xs": {"type": "array", "items": {"type": "string"}}},
        "oneOf": [{"required": ["nope"]}],
        "$ref": "#/definitions/x",
        "format": "email",
    }
    assert validate_metadata(schema, {"xs": [1, 2]}) == []


# --- type -----------------------------------------------------------------------------------

TYPE_CASES: list[tuple[str, list[Any], list[Any]]] = [
    ("string", ["", "x"], [1, 1.5, True, None, [], {}]),
    ("number", [0, -3, 1.5, True, False], ["1", None, [], {}]),
    ("integer", [0, -3, 10**30, True, False], [1.0, 1.5, "1", None, [], {}]),
    ("boolean", [True, False], [0, 1, "true", None, [], {}]),
    ("array", [[], [1, "a"]], [{}, "[]", 0, None]),
    ("object", [{}, {"a": 1}], [[], "{}", 0, None]),
    ("null", [None], [0, "", False, [], {}]),
]


@pytest.mark.parametrize(("type_name", "good", "bad"), TYPE_CASES)
def test_type(type_name: str, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert validate_metadata({"type": type_name}, value) == [], value
    for value in bad:
        assert validate_metadata({"type": type_name}, value) == [
            v("metadata", f"expected type '{type_name}'")
        ], value


def test_bools_pass_as_integer_and_number_in_properties() -> None:
    schema = {"properties": {"i": {"type": "integer"}, "n": {"type": "number"}}}
    assert validate_metadata(schema, {"i": True, "n": False}) == []


@pytest.mark.parametrize("type_value", ["strng", "", ["string", "null"], 7, None, {"a": 1}])
def test_unknown_or_malformed_type_is_ignored(type_value: Any) -> None:
    schema = {"type": type_value, "required": ["a"]}
    assert validate_metadata(schema, 5) == []
    # Without a usable type an object value is still checked for object keywords.
    assert validate_metadata(schema, {}) == [v("metadata.a", "required field missing")]


def test_type_mismatch_stops_descent() -> None:
    schema = {
        "type": "object",
        "required": ["a"],
        "additionalProperties": False,
        "enum": [{"a": 1}],
    }
    assert validate_metadata(schema, []) == [v("metadata", "expected type 'object'")]
    string_schema = {"type": "string", "minLength": 3, "pattern": "x", "enum": ["xyz"]}
    assert validate_metadata(string_schema, 5) == [v("metadata", "expected type 'string'")]
    nested = {"properties": {"a": {"type": "object", "required": ["b"]}}}
    assert validate_metadata(nested, {"a": "str"}) == [v("metadata.a", "expected type 'object'")]


def test_schema_without_type_checks_object_keywords() -> None:
    schema = {
        "required": ["who"],
        "properties": {"n": {"maximum": 1}},
        "additionalProperties": False,
    }
    assert validate_metadata(schema, {"n": 2, "x": 0}) == [
        v("metadata.who", "required field missing"),
        v("metadata.n", "maximum 1"),
        v("metadata.x", "additional property not allowed"),
    ]
    # ...and ignores them for a non-object value.
    assert validate_metadata(schema, "not an object") == []


# --- strings --------------------------------------------------------------------------------


def test_min_and_max_length() -> None:
    schema = {"minLength": 2, "maxLength": 4}
    assert validate_metadata(schema, "ab") == []
    assert validate_metadata(schema, "abcd") == []
    assert validate_metadata(schema, "a") == [v("metadata", "minLength 2")]
    assert validate_metadata(schema, "abcde") == [v("metadata", "maxLength 4")]
    assert validate_metadata(schema, "é" * 4) == []  # code points, not bytes


def test_length_keywords_apply_only_to_strings() -> None:
    schema = {"minLength": 2, "maxLength": 0}
    for value in [1, [1, 2, 3], {"a": 1}, None, True]:
        assert validate_metadata(schema, value) == []


@pytest.mark.parametrize("bound", ["2", 2.0, True, None, [2], {"n": 2}])
def test_non_integer_length_bounds_are_ignored(bound: Any) -> None:
    assert validate_metadata({"minLength": bound, "maxLength": bound}, "abcdef") == []
    assert validate_metadata({"minLength": bound, "maxLength": bound}, "") == []


def test_pattern_is_unanchored_search() -> None:
    assert validate_metadata({"pattern": "b+"}, "abbbc") == []
    assert validate_metadata({"pattern": "^b"}, "abc") == [
        v("metadata", "pattern '^b' did not match")
    ]


def test_pattern_applies_only_to_strings() -> None:
    for value in [1, None, ["zzz"], {"a": "zzz"}]:
        assert validate_metadata({"pattern": "^x$"}, value) == []


@pytest.mark.parametrize("pattern", [5, None, ["a"], True])
def test_non_string_pattern_is_ignored(pattern: Any) -> None:
    assert validate_metadata({"pattern": pattern}, "zzz") == []


def test_invalid_pattern_is_reported_not_raised() -> None:
    assert validate_metadata({"pattern": "x("}, "x") == [
        v("metadata", "invalid pattern in schema: missing ) at position 2")
    ]


def test_pattern_with_overflowing_repeat_is_reported() -> None:
    assert validate_metadata({"pattern": "a{4294967296}"}, "a") == [
        v("metadata", "invalid pattern in schema: repeat count too big at position 2")
    ]


@pytest.mark.parametrize(
    ("pattern", "subject"), [("(x+x+)+y", "x" * 3000), ("^(a|a)*$", "a" * 30 + "b")]
)
def test_catastrophic_backtracking_times_out_instead_of_stalling(
    pattern: str, subject: str
) -> None:
    assert validate_metadata({"pattern": pattern}, subject) == [
        v("metadata", f"pattern '{pattern}' timed out")
    ]


def test_pattern_that_warns_on_compile_is_still_usable() -> None:
    # re emits FutureWarning ("Possible nested set") for this pattern; the suite
    # runs with warnings as errors, so this also proves it is silenced.
    assert validate_metadata({"pattern": "[[a]"}, "[") == []
    assert validate_metadata({"pattern": "[[a]"}, "b") == [
        v("metadata", "pattern '[[a]' did not match")
    ]


def test_long_pattern_is_refused() -> None:
    assert validate_metadata({"pattern": "a" * 256}, "a" * 256) == []
    assert validate_metadata({"pattern": "a" * 257}, "a" * 257) == [
        v("metadata", "invalid pattern in schema: pattern longer than 256 characters")
    ]
    assert validate_metadata({"pattern": "abc"}, "abc", max_pattern_length=2) == [
        v("metadata", "invalid pattern in schema: pattern longer than 2 characters")
    ]


def test_long_subject_is_not_matched() -> None:
    assert validate_metadata({"pattern": "a"}, "a" * 10_000) == []
    assert validate_metadata({"pattern": "a"}, "a" * 10_001) == [
        v("metadata", "pattern 'a' did not match")
    ]
    assert validate_metadata({"pattern": "a"}, "aaaa", max_subject_length=3) == [
        v("metadata", "pattern 'a' did not match")
    ]


def test_compiled_patterns_are_cached() -> None:
    pattern = "^cache-probe-[0-9]+$"
    validate_metadata({"pattern": pattern}, "cache-probe-1")
    hits = schema_module._compile_pattern.cache_info().hits
    validate_metadata({"pattern": pattern}, "cache-probe-2")
    validate_metadata({"pattern": pattern}, "nope")
    assert schema_module._compile_pattern.cache_info().hits == hits + 2


def test_string_keywords_report_in_order() -> None:
    schema = {"type": "string", "minLength": 5, "maxLength": 1, "pattern": "z", "enum": ["q"]}
    assert validate_metadata(schema, "ab") == [
        v("metadata", "minLength 5"),
        v("metadata", "maxLength 1"),
        v("metadata", "pattern 'z' did not match"),
        v("metadata", "value must be one of ['q']"),
    ]


# --- numbers --------------------------------------------------------------------------------


def test_minimum_and_maximum_are_inclusive() -> None:
    schema = {"minimum": 1, "maximum": 3}
    for value in [1, 2, 3, 1.0, 2.5, 3.0]:
        assert validate_metadata(schema, value) == [], value
    assert validate_metadata(schema, 0) == [v("metadata", "minimum 1")]
    assert validate_metadata(schema, 0.999) == [v("metadata", "minimum 1")]
    assert validate_metadata(schema, 4) == [v("metadata", "maximum 3")]
    assert validate_metadata(schema, float("inf")) == [v("metadata", "maximum 3")]


def test_bound_is_rendered_as_given() -> None:
    assert validate_metadata({"minimum": 2.5}, 1) == [v("metadata", "minimum 2.5")]
    assert validate_metadata({"maximum": -1.0}, 0) == [v("metadata", "maximum -1.0")]
    assert validate_metadata({"maximum": 10**20}, 10**21) == [
        v("metadata", "maximum 100000000000000000000")
    ]


def test_bools_are_compared_as_numbers() -> None:
    assert validate_metadata({"minimum": 2}, True) == [v("metadata", "minimum 2")]
    assert validate_metadata({"maximum": 0}, True) == [v("metadata", "maximum 0")]
    assert validate_metadata({"maximum": 0}, False) == []


@pytest.mark.parametrize("bound", ["3", True, False, None, [3], {"n": 3}])
def test_non_numeric_bounds_are_ignored(bound: Any) -> None:
    assert validate_metadata({"minimum": bound, "maximum": bound}, 100) == []
    assert validate_metadata({"minimum": bound, "maximum": bound}, -100) == []


def test_bounds_apply_only_to_numbers() -> None:
    for value in ["5", None, [5], {"n": 5}]:
        assert validate_metadata({"minimum": 10, "maximum": 0}, value) == []


# --- enum -----------------------------------------------------------------------------------


def test_enum() -> None:
    schema = {"enum": ["a", "b"]}
    assert validate_metadata(schema, "a") == []
    assert validate_metadata(schema, "c") == [v("metadata", "value must be one of ['a', 'b']")]
    assert validate_metadata(schema, 1) == [v("metadata", "value must be one of ['a', 'b']")]


def test_enum_renders_like_python_repr() -> None:
    schema = {"enum": [1, "x", None, True, 2.5, [1], {"k": "v"}]}
    assert validate_metadata(schema, "y") == [
        v("metadata", "value must be one of [1, 'x', None, True, 2.5, [1], {'k': 'v'}]")
    ]


def test_enum_matches_structured_values() -> None:
    schema = {"enum": [[1, 2], {"k": "v"}, None]}
    assert validate_metadata(schema, [1, 2]) == []
    assert validate_metadata(schema, {"k": "v"}) == []
    assert validate_metadata(schema, None) == []
    assert len(validate_metadata(schema, [2, 1])) == 1


def test_empty_enum_rejects_everything() -> None:
    assert validate_metadata({"enum": []}, "a") == [v("metadata", "value must be one of []")]


@pytest.mark.parametrize("enum", ["ab", None, 1, {"a": 1}, True])
def test_non_list_enum_is_ignored(enum: Any) -> None:
    assert validate_metadata({"enum": enum}, "zzz") == []


# --- objects --------------------------------------------------------------------------------


def test_required_in_listed_order_once_each() -> None:
    schema = {"required": ["b", "a", 7, None, "b", "present"]}
    assert validate_metadata(schema, {"present": None}) == [
        v("metadata.b", "required field missing"),
        v("metadata.a", "required field missing"),
    ]


@pytest.mark.parametrize("required", ["who", {"who": True}, None, 1])
def test_non_list_required_is_ignored(required: Any) -> None:
    assert validate_metadata({"required": required}, {}) == []


def test_missing_property_is_only_reported_by_required() -> None:
    schema = {"required": ["a"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    assert validate_metadata(schema, {}) == [v("metadata.a", "required field missing")]


def test_nested_paths() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {
                "type": "object",
                "required": ["missing"],
                "properties": {"b": {"type": "integer"}, "c": {"properties": {"d": {"enum": [1]}}}},
                "additionalProperties": False,
            }
        },
    }
    metadata = {"a": {"b": "x", "c": {"d": 2}, "e": 0}}
    assert validate_metadata(schema, metadata) == [
        v("metadata.a.missing", "required field missing"),
        v("metadata.a.b", "expected type 'integer'"),
        v("metadata.a.c.d", "value must be one of [1]"),
        v("metadata.a.e", "additional property not allowed"),
    ]


def test_properties_follow_schema_order() -> None:
    schema = {"properties": {"z": {"type": "string"}, "a": {"type": "string"}}}
    assert validate_metadata(schema, {"a": 1, "z": 2}) == [
        v("metadata.z", "expected type 'string'"),
        v("metadata.a", "expected type 'string'"),
    ]


def test_additional_properties_false_in_metadata_order() -> None:
    schema = {"properties": {"ok": {}}, "additionalProperties": False}
    assert validate_metadata(schema, {"y": 1, "ok": 1, "x": 2}) == [
        v("metadata.y", "additional property not allowed"),
        v("metadata.x", "additional property not allowed"),
    ]
    assert validate_metadata({"additionalProperties": False}, {"a": 1}) == [
        v("metadata.a", "additional property not allowed")
    ]


def test_declared_property_with_non_dict_schema_is_not_additional() -> None:
    schema = {"properties": {"a": "string"}, "additionalProperties": False}
    assert validate_metadata(schema, {"a": 1}) == []


@pytest.mark.parametrize("additional", [True, {}, {"type": "string"}, "false", 0, None])
def test_only_false_additional_properties_has_effect(additional: Any) -> None:
    schema = {"properties": {}, "additionalProperties": additional}
    assert validate_metadata(schema, {"extra": 1}) == []


def test_contract_example() -> None:
    schema = {
        "type": "object",
        "required": ["who"],
        "properties": {"who": {"type": "string"}, "n": {"type": "integer", "maximum": 3}},
        "additionalProperties": False,
    }
    assert validate_metadata(schema, {"n": 5, "zz": True}) == [
        v("metadata.who", "required field missing"),
        v("metadata.n", "maximum 3"),
        v("metadata.zz", "additional property not allowed"),
    ]


def test_node_keywords_come_before_object_keywords() -> None:
    schema = {
        "enum": [{}],
        "required": ["r"],
        "properties": {"p": {"type": "null"}},
        "additionalProperties": False,
    }
    assert validate_metadata(schema, {"q": 1, "p": 0}) == [
        v("metadata", "value must be one of [{}]"),
        v("metadata.r", "required field missing"),
        v("metadata.p", "expected type 'null'"),
        v("metadata.q", "additional property not allowed"),
    ]


def _nested(levels: int, leaf: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A schema and metadata nested ``levels`` deep under key ``k``."""
    schema_node: dict[str, Any] = leaf
    value: dict[str, Any] = {}
    for _ in range(levels):
        schema_node = {"properties": {"k": schema_node}}
        value = {"k": value}
    return schema_node, value


def test_depth_is_bounded() -> None:
    schema, metadata = _nested(MAX_DEPTH, {"required": ["x"]})
    path = "metadata" + ".k" * MAX_DEPTH + ".x"
    assert validate_metadata(schema, metadata) == [v(path, "required field missing")]
    schema, metadata = _nested(MAX_DEPTH + 1, {"required": ["x"]})
    assert validate_metadata(schema, metadata) == []


def test_deep_metadata_without_schema_depth_is_fine() -> None:
    value: Any = "leaf"
    for _ in range(500):
        value = {"k": [value]}
    assert validate_metadata({"type": "object", "required": ["k"]}, value) == []


def test_inputs_are_not_mutated() -> None:
    schema = {"required": ["a"], "properties": {"b": {"enum": [1]}}, "additionalProperties": False}
    metadata = {"b": 2, "c": 3}
    before = (copy.deepcopy(schema), copy.deepcopy(metadata))
    validate_metadata(schema, metadata)
    assert (schema, metadata) == before


# --- schema_problems ------------------------------------------------------------------------


def test_schema_problems_accepts_usable_schemas() -> None:
    assert schema_problems({}) == []
    assert schema_problems({"severity": "string"}) == []
    assert schema_problems({"pattern": "^[a-z]+$", "properties": {"a": {"pattern": "x"}}}) == []
    assert schema_problems({"pattern": 5, "properties": {"a": "x"}}) == []


def test_schema_problems_reports_bad_patterns_with_paths() -> None:
    schema = {
        "pattern": "(",
        "properties": {
            "a": {"properties": {"b": {"pattern": "z" * 257}}},
            "c": {"pattern": "ok"},
        },
    }
    assert schema_problems(schema) == [
        "metadata: invalid pattern in schema: missing ) at position 1",
        "metadata.a.b: invalid pattern in schema: pattern longer than 256 characters",
    ]
    assert schema_problems({"pattern": "abc"}, max_pattern_length=2) == [
        "metadata: invalid pattern in schema: pattern longer than 2 characters"
    ]


def test_schema_problems_ignores_patterns_validation_never_evaluates() -> None:
    assert schema_problems({"items": {"pattern": "("}, "oneOf": [{"pattern": "("}]}) == []
    deep, _ = _nested(MAX_DEPTH + 1, {"pattern": "("})
    assert schema_problems(deep) == []
    reachable, _ = _nested(MAX_DEPTH, {"pattern": "("})
    assert len(schema_problems(reachable)) == 1


# --- never raises ---------------------------------------------------------------------------

KEYWORDS = [
    "type",
    "required",
    "properties",
    "additionalProperties",
    "enum",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "items",
]
NAMES = ["a", "b", "who"]
TYPE_NAMES = ["string", "number", "integer", "boolean", "array", "object", "null"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(TYPE_NAMES + NAMES + ["[[a]", "(", "a{4294967296}", "^a"]),
)
keys = st.one_of(st.sampled_from(KEYWORDS + NAMES), st.text(max_size=4))
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(schema=st.dictionaries(keys, json_values, max_size=6), metadata=json_values)
def test_never_raises(schema: dict[str, Any], metadata: Any) -> None:
    before = copy.deepcopy((schema, metadata))
    violations = validate_metadata(schema, metadata, max_pattern_length=16, max_subject_length=64)
    assert (schema, metadata) == before
    assert isinstance(violations, list)
    for violation in violations:
        assert set(violation) == {"field", "issue"}
        assert violation["field"].startswith("metadata")
        assert isinstance(violation["issue"], str)
    assert all(isinstance(problem, str) for problem in schema_problems(schema))
