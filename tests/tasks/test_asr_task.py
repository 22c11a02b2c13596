"""The ASR task module's LM verb: registration, synthesiser text kept apart from held-out sentences."""

import argparse

import pytest

from babeltower.tasks import asr as task


def test_asr_lm_verb_is_registered_with_the_shared_lm_options():
    parser = argparse.ArgumentParser()
    handlers = task.add_verbs(parser.add_subparsers(dest="verb"))
    assert handlers == {"transcribe": task.transcribe, "asr-lm": task.build_lm}
    args = parser.parse_args(["asr-lm", "shards", "--into", "hub", "--synth-text", "5"])
    assert (args.order, args.alpha, args.beta, args.beam_size, args.synth_text) == (5, 0.35, 2.0, 8, 5)
    assert parser.parse_args(["transcribe", "m", "a.wav", "--lm", "none"]).lm == "none"


def test_synthesiser_lm_text_never_holds_a_held_out_sentence():
    pytest.importorskip("gflanguages")
    from babeltower.datasets.synthetic.speech_text import SPEECH_LANGUAGES, language_corpus

    texts = task.synth_training_texts(30)
    assert len(texts) == 30 * len(SPEECH_LANGUAGES) + 30
    held_out = set()
    for lang in SPEECH_LANGUAGES:
        for pool in language_corpus(lang)["heldout"].values():
            held_out.update(pool)
    assert held_out and not held_out & set(texts)
    assert task.synth_training_texts(0) == []
