"""edgeopt.settings: a setting declared once carries its type, range and choices; the checks are derived."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path

import pytest

from edgeopt.errors import ConfigError
from edgeopt.settings import as_json, check_settings, read_yaml_settings, setting


class Colour(enum.StrEnum):
    red = "red"
    green = "green"


@dataclasses.dataclass(frozen=True)
class Toy:
    size: int = setting(32, low=16, high=1024, help="Input size.")
    share: float = setting(0.5, low=0.0, low_open=True, high=1.0, high_open=True, example="0.5")
    colour: Colour = setting(Colour.red)
    sizes: tuple[int, ...] = setting((32, 48), low=16, high=1024)
    where: Path | None = setting(None)
    alpha: float = setting(1.0, key="kd_alpha", low=0.0, high=1.0)

    def __post_init__(self) -> None:
        check_settings(self)


def test_values_are_coerced_to_their_declared_types() -> None:
    toy = Toy(size="64", share="0.25", colour="green", sizes="16, 24", where="runs/x")
    assert (toy.size, toy.share, toy.colour, toy.sizes, toy.where) == (64, 0.25, "green", (16, 24), Path("runs/x"))
    assert type(toy.share) is float and type(toy.size) is int and type(toy.colour) is str  # a choice is held as its text (checkpoints, digests)
    assert Toy(colour=Colour.green).colour == "green" and as_json(Toy()) == {
        "size": 32, "share": 0.5, "colour": "red", "sizes": [32, 48], "where": None, "alpha": 1.0}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"size": 8}, "`size` 8 is out of range: use 16..1024"),
    ({"share": 0.0}, "`share` 0.0 is out of range: use (0, 1), e.g. 0.5"),
    ({"share": 1.0}, "`share` 1.0 is out of range: use (0, 1)"),
    ({"colour": "gren"}, "`colour` 'gren' is unknown (did you mean 'green'?): use one of red, green"),
    ({"sizes": "32,8"}, "`sizes` 8 is out of range: use 16..1024"),
    ({"sizes": "32,x"}, "`sizes` 'x': expected a whole number"),
    ({"size": True}, "`size` True: expected a whole number"),
    ({"size": float("nan")}, "`size` nan: expected a whole number"),
    ({"alpha": 2.0}, "`kd_alpha` 2.0 is out of range: use 0..1"),  # said as the key users type
])
def test_a_value_out_of_its_declaration_is_one_line_naming_the_setting(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Toy(**kwargs)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_yaml_file_of_settings_names_an_unknown_key_with_the_closest(tmp_path: Path) -> None:
    path = tmp_path / "toy.yaml"
    path.write_text("size: 64\ncolor: red\n")
    with pytest.raises(ConfigError, match="unknown setting 'color'; did you mean 'colour'"):
        read_yaml_settings(path, [f.name for f in dataclasses.fields(Toy)])
    path.write_text("size: 64\nkd-alpha: 0.5\n")
    assert read_yaml_settings(path, ["size", "kd_alpha"]) == {"size": 64, "kd_alpha": 0.5}
