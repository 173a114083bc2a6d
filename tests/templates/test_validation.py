"""Every way a template name, module name or parameter can be refused, with the message a person sees."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.templates import catalogue, check_module_name, get_template, parse_assignments, render
from harness.templates.cvalues import MODULE_NAME_MAX


def refused(template: str, name: str = "mod", **params: object) -> str:
    with pytest.raises(HarnessError) as caught:
        render(template, name, params)
    return caught.value.message


# -- module names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("1hello", "cannot start with a digit"),
        ("hello-world", "found '-'"),
        ("héllo", "found 'é'"),
        ("hello world", "found ' '"),
        ("a/b", "found '/'"),
        ("../etc", "found '.'"),
        ("int", "C keyword"),
        ("static", "C keyword"),
        ("_Bool", "C keyword"),
        ("typeof", "C keyword"),
        ("__secret", "reserved"),
        ("_Upper", "reserved"),
        ("x" * (MODULE_NAME_MAX + 1), f"the limit is {MODULE_NAME_MAX}"),
    ],
)
def test_bad_module_names_are_refused_with_the_reason(name: str, reason: str) -> None:
    message = refused("hello", name)
    assert f"module name {name!r} is not usable" in message
    assert reason in message


def test_module_name_limit_is_the_kernels() -> None:
    # MODULE_NAME_LEN on x86_64 is 64 - sizeof(unsigned long) = 56 bytes with the NUL.
    assert MODULE_NAME_MAX == 55
    assert check_module_name("m" * 55) == "m" * 55
    assert render("hello", "m" * 55).name == "m" * 55


# -- template names -------------------------------------------------------------------------------


def test_unknown_template_lists_the_catalogue() -> None:
    message = refused("helo")
    assert "no template named 'helo'" in message
    for template in catalogue():
        assert template.name in message


# -- parameter names ------------------------------------------------------------------------------


def test_unknown_parameter_names_it_suggests_and_lists() -> None:
    message = refused("hello", greting="hi")
    assert "template 'hello' has no parameter 'greting'" in message
    assert "did you mean 'greeting'?" in message
    assert "its parameters are: author, description, license, greeting, init_error, fault" in message


def test_parameter_of_another_template_is_unknown() -> None:
    message = refused("hello", buffer_size="10")
    assert "no parameter 'buffer_size'" in message
    assert "did you mean" not in message


# -- parameter values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "params", "fragment"),
    [
        ("params", {"int_value": "abc"}, "'int_value' (int) cannot be 'abc': expected an integer"),
        ("params", {"int_value": "4.5"}, "expected an integer"),
        ("params", {"int_value": ""}, "expected an integer"),
        ("params", {"int_value": "2147483648"}, "between -2147483648 and 2147483647"),
        ("params", {"int_value": "-2147483649"}, "between -2147483648 and 2147483647"),
        ("params", {"int_value": True}, "got a boolean"),
        ("params", {"int_value": 1.5}, "expected an integer, got float"),
        ("params", {"bool_value": "maybe"}, "'bool_value' (bool) cannot be 'maybe': expected true or false"),
        ("params", {"bool_value": 3}, "expected text, got int"),
        ("params", {"array_values": "1,x,3"}, "item 2 ('x'): expected an integer"),
        ("params", {"array_values": "1,,3"}, "item 2 (''): expected an integer"),
        ("params", {"array_values": ",".join(["1"] * 65)}, "65 items; at most 64"),
        (
            "params",
            {"array_values": "1,2,3", "array_size": "2"},
            "array_values has 3 items but array_size is 2",
        ),
        ("params", {"array_size": "0"}, "between 1 and 64"),
        ("params", {"mode": "0666"}, "expected one of 0000"),
        ("params", {"mode": "rw"}, "expected one of"),
        ("hello", {"license": "MIT"}, "'license' (one of GPL|"),
        ("hello", {"init_error": "ENOTHING"}, "expected one of none, EPERM"),
        ("hello", {"fault": "segfault"}, "expected one of none, null-deref-init"),
        ("hello", {"fault": "bug-exit", "init_error": "EIO"}, "init_error and fault cannot both be set"),
        ("hello", {"greeting": "a\0b"}, "NUL character"),
        ("hello", {"greeting": "x" * 201}, "longer than 200 bytes"),
        ("hello", {"greeting": "é" * 101}, "longer than 200 bytes"),
        ("hello", {"greeting": 5}, "expected text, got int"),
        ("chardev", {"buffer_size": "0"}, "between 1 and 1048576"),
        ("chardev", {"buffer_size": "4", "message": "hello"}, "message is 5 bytes but buffer_size is 4"),
        ("chardev", {"device_name": "my-dev"}, "'device_name' (C identifier, at most 55 chars) cannot be"),
        ("chardev", {"device_name": "char"}, "C keyword"),
        ("chardev", {"leak": "everything"}, "expected one of none, chrdev-region, class, all"),
        ("procfs", {"entry_name": "a/b"}, "found '/'"),
        ("exporter", {"prefix": "p" * 41}, "the limit is 40"),
        ("exporter", {"prefix": "9lives"}, "cannot start with a digit"),
        ("consumer", {"exporter_prefix": "if"}, "C keyword"),
        ("consumer", {"use_gpl": "perhaps"}, "expected true or false"),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(template: str, params: dict, fragment: str) -> None:
    message = refused(template, **params)
    assert message.startswith(f"template {template!r}")
    assert fragment in message


@pytest.mark.parametrize(
    ("text", "value"),
    [("42", 42), ("-7", -7), ("0x10", 16), ("0644", 0o644), ("0o17", 15), ("1_000", 1000), ("+5", 5)],
)
def test_int_spellings(text: str, value: int) -> None:
    assert render("params", "m", {"int_value": text}).params["int_value"] == value


@pytest.mark.parametrize(("text", "value"), [("yes", True), ("Off", False), ("1", True), ("n", False)])
def test_bool_spellings(text: str, value: bool) -> None:
    assert render("params", "m", {"bool_value": text}).params["bool_value"] is value


def test_native_values_are_checked_like_text() -> None:
    source = render("params", "m", {"int_value": -3, "bool_value": False, "array_values": [4, 5]})
    assert source.params["int_value"] == -3
    assert source.params["array_values"] == (4, 5)
    assert "static int values[KMH_MAX_VALUES] = { 4, 5 };" in source.files["m.c"]


# -- presets --------------------------------------------------------------------------------------


def test_presets_are_their_base_with_other_defaults() -> None:
    preset = get_template("bad_chardev_leak")
    assert preset.base == "chardev" and preset.defect
    preset_c = render("bad_chardev_leak", "m").files["m.c"]
    base_c = render("chardev", "m", {"leak": "all"}).files["m.c"]
    assert 'from the "bad_chardev_leak" template' in preset_c
    assert preset_c.replace('"bad_chardev_leak" template', '"chardev" template') == base_c


def test_preset_defaults_can_be_overridden() -> None:
    source = render("bad_gpl_user", "m", {"use_gpl": "false"})
    assert "_multiply" not in source.files["m.c"]
    assert 'MODULE_LICENSE("Proprietary");' in source.files["m.c"]


# -- command-line assignments ---------------------------------------------------------------------


def test_assignments() -> None:
    assert parse_assignments(["a=1", "greeting=x=y", "b="]) == {"a": "1", "greeting": "x=y", "b": ""}


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        (["novalue"], "not of the form key=value"),
        (["=1"], "not of the form"),
        (["a=1", "a=2"], "given twice"),
    ],
)
def test_bad_assignments(items: list[str], fragment: str) -> None:
    with pytest.raises(HarnessError, match=fragment):
        parse_assignments(items)


# -- no input ends in anything but a rendered module or a HarnessError ------------------------------

_ALL_PARAMS = sorted({(t.name, p.name) for t in catalogue() for p in t.params})


@settings(max_examples=300, deadline=None)
@given(
    target=st.sampled_from(_ALL_PARAMS),
    value=st.one_of(st.text(max_size=80), st.integers(), st.booleans(), st.lists(st.integers(), max_size=5)),
    name=st.one_of(st.just("mod"), st.text(max_size=70)),
)
def test_any_input_renders_or_is_refused_cleanly(target: tuple[str, str], value: object, name: str) -> None:
    template, param = target
    try:
        source = render(template, name, {param: value})
    except HarnessError as error:
        assert error.message and "\n" not in error.message  # one line on the terminal
        return
    assert source.name == name
