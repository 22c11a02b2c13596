"""babeltower.eval.transfer: per-language fraction of English."""

import pytest

from babeltower.eval.transfer import transfer_table


def test_fraction_of_english_and_the_bar():
    en_only = {"per_language": {"en": {"r1": 0.8, "n": 5}, "de": {"r1": 0.72}, "el": {"r1": 0.4}}}
    reference = {"en": {"r1": 0.9}, "de": {"r1": 0.9}, "el": {"r1": 0.81}}
    table = transfer_table(en_only, reference, "r1")
    assert table["per_language"]["de"]["english_only_of_en"] == 0.9
    assert table["per_language"]["el"]["all_languages_of_en"] == 0.9
    assert table["languages_below_bar"] == ["el"] and table["min_fraction"] == 0.5
    assert "| en |" in table["markdown"]
    with pytest.raises(ValueError, match="no English 'r1'"):
        transfer_table({"de": {"r1": 1.0}}, None, "r1")
