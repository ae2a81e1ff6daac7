"""IFEval checkers: table cases for all 25 instruction types, strict and loose.

The `PAPER` cases are the reference implementation's own unit-test cases
(google-research instruction_following_eval/instructions_test.py), rewritten as
(instruction, kwargs, response, expected strict verdict) rows. `OURS` adds cases for the
loose variants and for edges the paper's tests do not cover.
"""

from __future__ import annotations

import textwrap

import pytest

from sfteval.metrics import ifeval
from sfteval.metrics.ifeval_text import count_sentences, count_words

pytest.importorskip("langdetect")


def d(s: str) -> str:
    return textwrap.dedent(s)


PAPER: list[tuple[str, dict, str, bool]] = [
    ("language:response_language", {"language": "en"}, "The response is English", True),
    ("language:response_language", {"language": "es"}, "Desayunamos en McDonald's hoy", True),
    ("language:response_language", {"language": "en"}, "Today we visit the Louvre", True),
    ("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 4}, "xx,x. xx,x! xx/x. x{x}x?", False),
    ("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 5}, "xxxx. xx,x! xxxx. x(x)x?", True),
    ("length_constraints:number_sentences", {"relation": "at least", "num_sentences": 4}, "xxxx. xx,x! xx|x. x&x x?", True),
    ("length_constraints:number_sentences", {"relation": "at least", "num_sentences": 5}, "xx-x. xx,x! xx}x. x,xx?", False),
    ("detectable_content:number_placeholders", {"num_placeholders": 5},
     "Sure, here is a short template with 5 placeholders:\n[Name]\n[Email]\n[Phone]\n[Address]\n[Website]\n"
     "This template can be used for a variety of purposes.", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 7}, "My [adjective] [noun] is [adjective] [noun]. I [verb] and [verb].", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, d("""
      A Markdown bullet point is a way of formatting text to create a list. To
      create a bullet point, start each line with an asterisk (*). For example:
      * This is a bullet point.
      *(no space required)Another bullet point.
      * (no newline ending required)Another bullet point.
      markdown bullet points are often used to create to-do lists or to list items
      in a step-by-step guide."""), True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, d("""
      Check that inline asterisk (*), *, will not be counted. Only * that starts a
      bullet list will be counted:
        * This is a bullet point.
        * Another bullet point.
        . dot is not counted"""), True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, d("""
      Here are three markdown bullets:
      - I am a large language model, also known as a conversational AI.
      - I am trained on a massive amount of text data.
      -I am still under development."""), True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "Paragraph 1\n***\nParagraph 2\n***\nParagraph 3\n* only one bullet point\n", True),
    ("detectable_format:constrained_response", {}, "\n My answer is no.\n", True),
    ("detectable_format:constrained_response", {}, "My answer is no.   ", True),
    ("detectable_format:constrained_response", {}, "\n  My answer is no. I am still under development and learning.", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "you would type:*hello*, You can also use the ** character to create bold text. you would type: **hello** ", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "*Finite difference methods\n*Finite element methods*\n*Boundary element methods\n*Monte Carlo methods\nI hope this helps!", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 4},
     "There is allowed to be *two different* highlighted *sections in the same*\nline. **This is also true** for **double markdown highlights.**\n", True),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 3}, d("""
      Your response must have multiple sections. Mark the beginning of each section
      with "Section X", such as:
      Section 1
      [content of section 1]
      Section 2
      [content of section 2]"""), False),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\n[content of section 1]\nSECTION 2\n[content of section 2]", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "\nparagraph 1\n***\nparagraph 2\n***\nparagraph 3", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "\n    ***\nparagraph 1\n    ***\nparagraph 2\n    ***\nparagraph 3", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "\nparagraph 1\n    ***\nparagraph 2\n    ***\nparagraph 3\n    ***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "\nparagraph 1\n    ***\nparagraph 2\n    ***\n    ***", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "I will do my best.\n\nP.S. I hope this is what you were looking for.", True),
    ("detectable_content:postscript", {"postscript_marker": "PS:"}, "I will do my best.\n\nP.S. I hope this is what you were looking for.", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "My response.\n\nP.P.S. I am always happy to help.\n\nAny questions?", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "a circle has no size (not starting a new line) P.S. I hope you enjoyed my joke!", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "the area is one.\np.p.s what if the entire response was lower case letters?\n", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Mysterious.\nP. S. Sometimes there are even spaces between P. and S..\n", True),
    ("keywords:existence", {"keywords": ["romantic", "river", "Mona Lisa"]},
     "The romantic river Seine winds past the Louvre Museum, where the Mona Lisa resides.", True),
    ("keywords:existence", {"keywords": ["romantic", "river", "Mona Lisa"]},
     "Paris is a city of beauty, romance, and history. It is known for its romantic river cruises.", False),
    ("keywords:frequency", {"keyword": "  keyword ", "frequency": 4, "relation": "less than"}, "\n  keyword, Keyword, KEYWORD\n", True),
    ("keywords:frequency", {"keyword": "  keyword ", "frequency": 3, "relation": "at least"}, "\n  keyword, Keyword, KEYWORD\n", True),
    ("keywords:frequency", {"keyword": "KEYWORD", "frequency": 4, "relation": "at least"}, "\n    *keyword\n    *Keyword\n    *KEYWORD\n", False),
    ("length_constraints:number_words", {"num_words": 8, "relation": "less than"}, "\n  d3sCRi7 lArge lAnguagE M0del w1tH 20 w0RdS.", True),
    ("length_constraints:number_words", {"num_words": 16, "relation": "less than"},
     "L4RGE L4NGU4GE M0DEL: AI syst3m th4t und3rstands, g3n3r4tes, or tr4nsforms\nl4ngu4g3 b4s3d on pr3vious l3arning & d4t4.", False),
    ("length_constraints:number_words", {"num_words": 16, "relation": "at least"},
     "L4RGE L4NGU4GE M0DEL: AI syst3m th4t und3rstands, g3n3r4tes, or tr4nsforms\nl4ngu4g3 b4s3d on pr3vious l3arning & d4t4.", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "I"},
     "\nparagraph 1\n\nI paragraph 2\n\nparagraph 3", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "I"},
     "\nparagraph 1\n\nI paragraph 2", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "I"},
     "\nparagraph 1\n\nfail paragraph 2\n\nparagraph 3", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 5, "nth_paragraph": 5, "first_word": "haha"},
     "Wow.\n\nI can't.\n\nReally? No way!\n\nI guess.\n\nHaha, you go that right.", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 5, "nth_paragraph": 3, "first_word": "Really"},
     "Wow.\n\nI can't.\n\n\"Really?! more than three? No way!\"\n\nI guess.\n\nHaha.", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 5, "nth_paragraph": 3, "first_word": "Really"},
     "Wow.\n\nI can't.\n\nRea!lly more than three? No way!\n\nI guess.\n\nHaha.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["HOUSE", "POWER", "BECOME"]}, "The Nazis came to power in 1933.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["HOUSE", "POWER", "BECOME"]}, "Dinosaurs dominated the Earth.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["GOOGLE", "TEXT"]}, "GPT models are trained on text and code.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["GENE", "TRANSFORM"]}, "Generative Pre-trained Transformer models.", True),
    ("combination:two_responses", {}, "\nThis is response 1.\n******\nThis is response 2.\n", True),
    ("combination:two_responses", {}, "\nThis is response 1.\n******\nThis is response 1.\n", False),
    ("combination:two_responses", {}, "\nResponse 1.\n******\nResponse 2.\n******\nResponse 3.\n", False),
    ("combination:two_responses", {}, "\n******\nResponse 1.\n******\n******\nResponse 2.\n******\n", False),
    ("combination:two_responses", {}, "\n******\nResponse 1\n******\nResponse 2\n******\n", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a CL description."}, "Write a CL description. Hi, Le and TJ, please\ncheck this out.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a CL description."}, "Hi, Le and TJ. Write a CL description. Thanks.\n", False),
    ("startend:end_checker", {"end_phrase": "\n  Any more questions?\n  "}, "\n  The answer is 7. Any more questions?\n  ", True),
    ("startend:end_checker", {"end_phrase": "This is the end."}, "I am required to say that this is the end.\n", True),
    ("startend:end_checker", {"end_phrase": "This will fail."}, "This will fail. Paris is cool.\n", False),
    ("detectable_format:title", {}, "\n  <<Song of Joy>>\n  La la la. Happy song.\n", True),
    ("detectable_format:title", {}, "Is it fine for title to be at the end?\n<<This is the title>>\n", True),
    ("detectable_format:title", {}, "\n  << >>\n  There is no title.\n", False),
    ("detectable_format:title", {}, "\n  <<This is not a title.\n  This is a paragraph.>>\n", False),
    ("keywords:letter_frequency", {"letter": "T", "let_frequency": 4, "let_relation": "at least"}, "\n  There is the T. Four T's.\n", True),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 4, "let_relation": "less than"}, "\n  asdfghjkl!!aA\n", True),
    ("keywords:letter_frequency", {"letter": "p", "let_frequency": 4, "let_relation": "at least"}, "\n  asdfghjkl!!aA\n", False),
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 4, "let_relation": "at least"}, "#one #two #three #four", True),
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 4, "let_relation": "at least"}, "#one #two #three", False),
    ("change_case:english_capital", {}, "\n  THIS IS AN ENGLISH SENTENCE. EVERY LETTER IS CAPITALIZED!!! AMAZING.\n", True),
    ("change_case:english_capital", {}, "\n  Every Word Is Capitalized.\n", False),
    ("change_case:english_lowercase", {}, "\n  every letter is lowercase.\n", True),
    ("change_case:english_lowercase", {}, "\n  Almost every letter is lowercase.\n", False),
    ("punctuation:no_comma", {}, "\n  Every sentence is short. There is no need for a comma.\n", True),
    ("punctuation:no_comma", {}, "\n  Since the start of time, people have always found a way to punctuate.\n", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "\n  HERE there are THREE FUlly CAPITAL words.\n", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 5, "capital_relation": "less than"},
     "\n  THERE are Four FULLY CAPITAL WORDS. Many Others Are Only Partially So.\n", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 4, "capital_relation": "less than"},
     "\n  THERE are Four FULLY CAPITAL WORDS. Many Others Are Only Partially So.\n", False),
    ("startend:quotation", {}, '\n  "This entire message is wrapped in double quotation marks."\n', True),
    ("startend:quotation", {}, '\n  "This message is wrapped in double quotation marks." But not everything.\n', False),
]

# (instruction, kwargs, response, strict, loose): loose variants and edges.
OURS: list[tuple[str, dict, str, bool, bool]] = [
    # a preamble line ("Sure!") breaks strict but the loose variant without line 1 passes
    ("detectable_format:json_format", {}, 'Sure, here it is:\n{"a": 1}', False, True),
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', True, True),
    ("detectable_format:json_format", {}, "{'a': 1}", False, False),
    ("startend:quotation", {}, 'Here you go:\n"All quoted."', False, True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "Okay!\nSay hi. Hi!", False, True),
    ("startend:end_checker", {"end_phrase": "Is there anything else I can help with?"},
     "Done.\nIs there anything else I can help with?\n(Generated by a bot)", False, True),
    # '*' removal: markdown bold around the required option
    ("detectable_format:constrained_response", {}, "My answer is *yes*.", False, True),
    ("detectable_format:constrained_response", {}, "Yes.", False, False),
    ("punctuation:no_comma", {}, "Hello, world", False, False),
    ("punctuation:no_comma", {}, "Note, this line goes\nNo commas here", False, True),
    ("change_case:english_lowercase", {}, "Title Line\nall lower case text about the weather today", False, True),
    ("change_case:english_capital", {}, "Sure:\nTHIS IS ALL CAPITALS IN ENGLISH TEXT", False, True),
    ("change_case:english_capital", {}, "ESTO ES UN TEXTO EN ESPAÑOL MUY CLARO Y LARGO PARA DETECTAR", False, False),
    ("language:response_language", {"language": "de"}, "Das ist ein deutscher Satz über das Wetter.", True, True),
    ("language:response_language", {"language": "de"}, "This is plainly an English sentence about the weather.", False, False),
    ("language:response_language", {"language": "fr"}, "12345 67890", True, True),  # no features: followed, as the reference
    ("keywords:existence", {"keywords": ["alpha"]}, "ALPHA beta", True, True),
    ("keywords:existence", {"keywords": ["alpha", "gamma"]}, "alpha beta", False, False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "cat\ncat cat", True, True),
    ("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": "less than"}, "cat\ncat cat", False, True),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "badly but not the word", True, True),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "Intro bad\nfine text\noutro bad", False, True),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "bad\nbad\nbad", False, False),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "Zz", True, True),
    ("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 2},
     "Intro sentence here.\nOne sentence only.", False, True),
    ("length_constraints:number_sentences", {"relation": "at least", "num_sentences": 2}, "Dr. Smith met Mr. Jones.", False, False),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, "Header words here\none two", False, True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "Intro ***\np1 *** p2", False, True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "p1 *** *** p2", False, False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "first"},
     "First, a start.\n\nThen the second.", True, True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[a] and [b]", True, True),
    ("detectable_content:number_placeholders", {"num_placeholders": 3}, "[a] and [b]", False, False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "No postscript here.", False, False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "Intro:\n* one\n* two\n* three", False, True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one", False, False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two\n* Note: last line", False, True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "no highlights at all", False, False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "** ** and * *", False, False),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2}, "SECTION 1 a\nSECTION 2 b", True, True),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 3}, "SECTION 1 a\nSECTION 2 b", False, False),
    ("detectable_format:title", {}, "**<<Bold Title>>**\ntext", True, True),
    ("combination:two_responses", {}, "Here are two:\nA\n******\nB", True, True),
    ("combination:two_responses", {}, "only one response", False, False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}, "NASA and ESA.", True, True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"}, "HEADER LINE\nlower only", False, True),
]

EMPTY_CASES = [(iid, {"keywords": ["x"]} if iid == "keywords:existence" else {}) for iid in ("punctuation:no_comma", "keywords:forbidden_words")]


@pytest.mark.parametrize(("iid", "kwargs", "response", "expected"), PAPER)
def test_paper_cases_strict(iid: str, kwargs: dict, response: str, expected: bool) -> None:
    assert ifeval.check_args(iid, kwargs) is None
    strict, loose = ifeval.evaluate([iid], [kwargs], response)
    assert strict == [expected]
    assert loose[0] or not strict[0]  # loose is an upper bound of strict


@pytest.mark.parametrize(("iid", "kwargs", "response", "strict", "loose"), OURS)
def test_strict_and_loose(iid: str, kwargs: dict, response: str, strict: bool, loose: bool) -> None:
    assert ifeval.check_args(iid, kwargs) is None
    assert ifeval.evaluate([iid], [kwargs], response) == ([strict], [loose])


def test_every_instruction_type_has_cases_both_ways() -> None:
    assert len(ifeval.INSTRUCTIONS) == 25
    seen: dict[str, set[bool]] = {i: set() for i in ifeval.INSTRUCTIONS}
    for iid, _, _, expected in PAPER:
        seen[iid].add(expected)
    for iid, _, _, strict, loose in OURS:
        seen[iid].update({strict, loose})
    assert {i: v for i, v in seen.items() if v != {True, False}} == {}
    loose_gain = {iid for iid, _, _, s, lo in OURS if lo and not s}
    assert len(loose_gain) >= 15  # the loose rescue is exercised on most types


def test_empty_response_follows_nothing() -> None:
    # no_comma and forbidden_words would pass on "" by their checks; the paper says no
    assert ifeval.evaluate(["punctuation:no_comma", "keywords:forbidden_words"],
                           [{}, {"forbidden_words": ["x"]}], "  \n ") == ([False, False], [False, False])


def test_arguments_are_validated() -> None:
    assert "unknown instruction" in (ifeval.check_args("keywords:nope", {}) or "")
    assert "needs argument" in (ifeval.check_args("keywords:frequency", {"keyword": "a"}) or "")
    assert "relation" in (ifeval.check_args("length_constraints:number_words",
                                            {"num_words": 3, "relation": "more than"}) or "")
    assert ifeval.clean_kwargs({"a": None, "b": 0, "c": "x"}) == {"b": 0, "c": "x"}


def test_loose_variants_are_the_papers_eight_without_duplicates() -> None:
    v = ifeval.loose_variants("*first*\nmiddle\nlast*")
    assert v[0] == "*first*\nmiddle\nlast*"
    assert set(v) == {"*first*\nmiddle\nlast*", "first\nmiddle\nlast", "middle\nlast*", "*first*\nmiddle", "middle",
                      "middle\nlast", "first\nmiddle"}
    assert ifeval.loose_variants("plain") == ["plain", ""]


@pytest.mark.parametrize(("text", "n"), [
    ("Dr. Smith arrived at 9 a.m. and left. He was fine.", 2),
    ("The U.S. team won. Mr. Jones cheered!", 2),
    ("Use it, e.g. like this. Done.", 3),  # like NLTK's English model: a break after "e.g."
    ("One? Two! Three.", 3),
    ("no final period", 1),
])
def test_sentence_counts(text: str, n: int) -> None:
    assert count_sentences(text) == n


def test_words_counted_like_the_reference_regexp() -> None:
    assert count_words("It's 2 o'clock, isn't it?") == 8
