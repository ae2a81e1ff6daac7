"""Text measurements the IFEval checkers need, all offline: words, sentences, word
tokens for capital-word counts, and language detection.

What each needs, and why it is offline-safe:
- words: the reference counts `nltk.tokenize.RegexpTokenizer(r"\\w+")` tokens, which is
  `re.findall(r"\\w+")`; done here with `re` alone.
- sentences: the reference loads NLTK's trained English Punkt model
  (`tokenizers/punkt`), which NLTK downloads at run time and which no Debian/PyPI
  package we trust ships. We run NLTK's own Punkt algorithm
  (`nltk.tokenize.punkt.PunktSentenceTokenizer`, no data files) with a parameter set
  written here: the common English abbreviations and initials the trained model knows,
  so "Dr. Smith" does not end a sentence. It differs from the trained model only where the trained
  model's orthographic statistics decide (about initials and abbreviations followed by
  a capitalised word); `perf/ifeval_scoring.py` measures the agreement of counts and
  verdicts against the reference. Set
  `options.sentences = "nltk_punkt"` to use NLTK's installed `punkt_tab` English data
  instead (never downloaded: an error says how to install it when it is missing).
- word tokens: the reference's `nltk.word_tokenize` first splits sentences with Punkt;
  here `NLTKWordTokenizer` runs on the whole text (word_tokenize's `preserve_line`),
  which changes only where a sentence-final period is split off a word, never whether a
  word is all capitals.
- language: `langdetect` (pure Python, its language profiles ship inside the package).
  Our own `DetectorFactory` with seed 0 (the paper's code fixes the same seed), so the
  verdict is deterministic and the process-wide factory is left alone. Results are
  cached by text: the loose variants of one response often coincide.

Not covered: languages other than English for words and sentences (as in the paper).
"""

from __future__ import annotations

import functools
import re
from typing import Any

_WORD = re.compile(r"\w+")

# Abbreviations (lowercase, final period dropped, inner periods kept) after which Punkt
# must not end a sentence. Chosen to behave like NLTK's trained English model on common
# text, which is what the reference counts with: titles, months and weekdays, business
# and address words, US states, degrees and country initials, and single-letter
# initials. Like that model (trained on news text), "e.g.", "i.e." and "etc." are NOT
# abbreviations: the reference ends a sentence after them, and so do we.
ABBREVIATIONS: frozenset[str] = frozenset(
    """
    mr mrs ms dr prof messrs rep reps sen gen col lt maj adm sr jr
    jan feb aug sep sept oct nov dec tues wed fri yr
    co corp inc ltd bros cie cos chg st ave ft ct sw mg ok vs
    ala ariz calif colo conn fla ga ill kan ky mich minn nev okla ore pa tenn va vt wash wis w.va
    a.m p.m ph.d m.b.a u.s u.s.a u.k u.n u.s.s.r d.c n.y n.j n.c n.d n.h n.m n.v s.c l.a
    c d e f g h k l m n p r s t v w
    """.split()
)
# Words after which a period-ended abbreviation is taken to end the sentence (Punkt's
# "sentence starters"): frequent sentence-initial function words.
SENTENCE_STARTERS: frozenset[str] = frozenset(
    """
    according although among both but despite even he however i if in indeed instead it
    many meanwhile moreover most nevertheless nonetheless nor separately similarly since so
    some the there these they this though thus under when while yet
    """.split()
)


@functools.lru_cache(maxsize=1)
def _builtin_punkt() -> Any:
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(ABBREVIATIONS)
    params.sent_starters = set(SENTENCE_STARTERS)
    return PunktSentenceTokenizer(params)


@functools.lru_cache(maxsize=1)
def _nltk_punkt() -> Any:
    from nltk.tokenize.punkt import PunktTokenizer

    try:
        return PunktTokenizer("english")
    except LookupError as e:
        from sfteval.errors import SftevalError

        raise SftevalError(
            "options.sentences = 'nltk_punkt' needs NLTK's punkt_tab English data, which is not installed",
            field="options.sentences",
            hint="install it where a network is available (python -m nltk.downloader punkt_tab), "
            "or use the built-in splitter (sentences = 'builtin')",
        ) from e


SENTENCE_SPLITTERS = ("builtin", "nltk_punkt")


def sentence_tokenizer(name: str = "builtin") -> Any:
    if name == "builtin":
        return _builtin_punkt()
    if name == "nltk_punkt":
        return _nltk_punkt()
    from sfteval.errors import SftevalError

    raise SftevalError(f"unknown sentence splitter '{name}'", field="options.sentences", hint=" | ".join(SENTENCE_SPLITTERS))


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


@functools.lru_cache(maxsize=4096)  # the instructions of one prompt check the same variants
def count_sentences(text: str, splitter: str = "builtin") -> int:
    return len(sentence_tokenizer(splitter).tokenize(text))


@functools.lru_cache(maxsize=1)
def _word_tokenizer() -> Any:
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


@functools.lru_cache(maxsize=4096)
def count_capital_words(text: str) -> int:
    """Tokens that are all capitals (str.isupper), as the reference counts them."""
    return sum(1 for tok in _word_tokenizer().tokenize(text) if tok.isupper())


@functools.lru_cache(maxsize=1)
def _language_factory() -> Any:
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.seed = 0
    return factory


def language_available() -> bool:
    try:
        import langdetect  # noqa: F401  (only whether it imports)
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=8192)
def detect_language(text: str) -> str | None:
    """ISO 639-1 code, or None where langdetect finds no features (the reference then
    counts the instruction as followed)."""
    from langdetect.lang_detect_exception import LangDetectException

    detector = _language_factory().create()
    detector.append(text)
    try:
        return str(detector.detect())
    except LangDetectException:
        return None
