"""The estimator registry and parameter validation: clear errors for every misuse."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from estimators import (
    Estimate,
    EstimatorError,
    GradientEstimator,
    Param,
    make_estimator,
    registry,
)


def _toy_class(name: str) -> type[GradientEstimator]:
    class Toy(GradientEstimator):
        """A test estimator with one bounded parameter of each kind."""

        unbiased = False
        params = (
            Param(name="k", kind=int, default=10, low=1, help="subspace size"),
            Param(name="keep", kind=float, default=0.5, low=0, high=1, low_open=True, help="p"),
            Param(name="sketch", kind=str, default="uniform", choices=("uniform", "minvar"),
                  help="which sketch"),
            Param(name="adaptive", kind=bool, default=False, help="adapt"),
        )  # fmt: skip

        def estimate(self, batch, generator):  # type: ignore[no-untyped-def]
            return Estimate(grads={}, loss=torch.tensor(0.0))

    Toy.name = name
    registry.register(Toy)
    return Toy


def test_backprop_is_registered_and_described() -> None:
    assert "backprop" in registry.names()
    cls = registry.get("backprop")
    assert cls.unbiased is True
    for section in ("Formula:", "Unbiased:", "Cost:", "Reference:"):
        assert section in (cls.__doc__ or "")


def test_every_shipped_estimator_documents_formula_cost_and_reference() -> None:
    shipped = registry.shipped_names()
    assert "backprop" in shipped and "test-toy" not in shipped
    for name in shipped:
        doc = registry.get(name).__doc__ or ""
        missing = [s for s in ("Formula:", "Unbiased:", "Cost:", "Reference:") if s not in doc]
        assert not missing, f"{name} docstring lacks {missing}"


def test_subclass_with_name_registers_itself(isolated_registry: None) -> None:
    class Mine(GradientEstimator):
        """Formula: none."""

        name = "test-mine"
        unbiased = True

        def estimate(self, batch, generator):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    assert registry.get("test-mine") is Mine
    assert isinstance(make_estimator("test-mine"), Mine)


def test_duplicate_name_is_refused(isolated_registry: None) -> None:
    with pytest.raises(EstimatorError, match="'backprop' is already registered by estimators"):

        class Again(GradientEstimator):
            name = "backprop"
            unbiased = True

            def estimate(self, batch, generator):  # type: ignore[no-untyped-def]
                raise NotImplementedError

    assert registry.get("backprop").__name__ == "Backprop"


def test_invalid_name_is_refused(isolated_registry: None) -> None:
    with pytest.raises(EstimatorError, match="lower-case letters, digits and '-'"):
        _toy_class("Bad.Name")


def test_unbiased_must_be_declared(isolated_registry: None) -> None:
    with pytest.raises(TypeError, match="declare `unbiased"):

        class NoClaim(GradientEstimator):
            name = "test-no-claim"

            def estimate(self, batch, generator):  # type: ignore[no-untyped-def]
                raise NotImplementedError


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(EstimatorError, match=r"unknown estimator 'nope'; valid: .*backprop"):
        make_estimator("nope")


def test_spec_parameters_are_parsed_typed_and_canonical(isolated_registry: None) -> None:
    _toy_class("test-toy")
    est = make_estimator("test-toy:k=3,keep=0.25,sketch=minvar,adaptive=true")
    assert (est.k, est.keep, est.sketch, est.adaptive) == (3, 0.25, "minvar", True)
    assert est.params_str == "k=3,keep=0.25,sketch=minvar,adaptive=true"
    assert make_estimator(est.spec).config == est.config
    assert make_estimator("test-toy").config == {
        "k": 10, "keep": 0.5, "sketch": "uniform", "adaptive": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("test-toy:k=0", r"k=0 is invalid; valid: an integer >= 1"),
        ("test-toy:k=2.5", r"k='2.5' is invalid; valid: an integer >= 1"),
        ("test-toy:keep=0", r"keep=0.0 is invalid; valid: a number in \(0, 1\]"),
        ("test-toy:keep=1.5", r"valid: a number in \(0, 1\]"),
        ("test-toy:sketch=dense", r"sketch='dense' is invalid; valid: one of uniform, minvar"),
        ("test-toy:adaptive=maybe", r"valid: true or false"),
        ("test-toy:kk=3", r"unknown parameter 'kk'; valid parameters: k, keep, sketch, adaptive"),
        ("test-toy:k", r"parameters must be written key=value"),
    ],
)
def test_bad_parameters_name_the_valid_range(isolated_registry: None, spec: str, message: str):
    _toy_class("test-toy")
    with pytest.raises(EstimatorError, match=message):
        make_estimator(spec)


def test_constructor_validates_like_the_spec(isolated_registry: None) -> None:
    cls = _toy_class("test-toy")
    with pytest.raises(EstimatorError, match="k=-1 is invalid"):
        cls(k=-1)
    with pytest.raises(EstimatorError, match="k=True is invalid"):
        cls(k=True)


def test_load_by_import_path(isolated_registry: None, tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "userpkg_cheapgrad"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mine.py").write_text(
        textwrap.dedent(
            '''
            from estimators import Estimate, GradientEstimator, Param

            class Scaled(GradientEstimator):
                """Formula: 2 g."""

                name = "user-scaled"
                unbiased = False
                params = (Param(name="alpha", kind=float, default=2.0, low=0, help="scale"),)

                def estimate(self, batch, generator):
                    raise NotImplementedError
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    est = make_estimator("userpkg_cheapgrad.mine:Scaled:alpha=0.5")
    assert est.name == "user-scaled" and est.alpha == 0.5
    assert make_estimator("user-scaled").alpha == 2.0
    monkeypatch.delitem(sys.modules, "userpkg_cheapgrad.mine")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_pkg_cheapgrad.mod:Cls", "cannot import 'no_such_pkg_cheapgrad.mod'"),
        ("estimators.backprop:Missing", "is not a GradientEstimator subclass"),
        ("estimators.base:GradientEstimator", "declares no `name`"),
    ],
)
def test_bad_import_paths_are_clear(spec: str, message: str) -> None:
    with pytest.raises(EstimatorError, match=message):
        make_estimator(spec)


def test_param_default_must_be_valid() -> None:
    with pytest.raises(EstimatorError, match="valid: an integer >= 1"):
        Param(name="k", kind=int, default=0, low=1, help="x")


def test_estimating_before_bind_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="call bind"):
        make_estimator("backprop").estimate((torch.zeros(1), torch.zeros(1)), torch.Generator())


def test_the_readme_example_estimator_works(isolated_registry: None) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    est = make_estimator("signed-backprop:scale=0.5")
    model = torch.nn.Linear(3, 2)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    est.bind(
        model, lambda logits, t: torch.nn.functional.cross_entropy(logits, t, reduction="none")
    )
    grads = est.estimate((x, y), torch.Generator()).grads
    assert set(grads) == {"weight", "bias"}
    assert all(p.grad is None for p in model.parameters())
