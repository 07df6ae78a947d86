"""What a user reads about a catalog track never contradicts the track's stored facts, repeats
itself or shows broken output (serve.catalog.grounding: captions and recommendation reasons)."""

from serve.catalog.grounding import checked, contradicts

FACTS = {"tempo_bpm": 96.0, "key": "A", "mode": "minor", "time_signature": "3/4"}


def test_sentences_that_contradict_the_stored_facts_are_dropped():
    text = ("A sad waltz in A minor. It is in C major. The tempo is about 140 BPM. About 95 BPM. "
            "It is in 4/4 time. Three beats to the bar, 3/4. The mood is major and bright.")
    assert checked(text, FACTS) == "A sad waltz in A minor. About 95 BPM. Three beats to the bar, 3/4."
    assert contradicts("It is in Bb minor.", {"key": "A#", "mode": "minor"}) is False  # flats as the catalog's sharps
    assert contradicts("Played at 120 BPM.", {"tempo_bpm": None}) is True  # known to have no tempo: invented
    assert contradicts("Played at 120 BPM.", {"key": "C"}) is False  # tempo unknown: nothing to check
    assert contradicts("It is in D major.", {}) is False  # nothing stored: nothing to contradict


def test_metres_and_tempi_stated_in_words_are_checked_too():
    four = {"tempo_bpm": 140.0, "time_signature": "4/4"}
    # the issue's own caption: a metre in numbers and another in words
    assert contradicts("It is in 4/4, with three beats to the bar.", four) is True
    assert contradicts("It is in 4/4, with four beats to the bar.", four) is False
    assert contradicts("A gentle piece in waltz time.", four) is True
    assert contradicts("It has two groups of three eighth notes per bar (6/8).", {"time_signature": "6/8"}) is False
    assert contradicts("It keeps a slow pace.", four) is True  # 140 BPM is fast
    assert contradicts("It has a fast tempo of 138 BPM.", four) is False
    assert contradicts("The tempo is medium-fast.", {"tempo_bpm": 128.0}) is False  # 10% from the band's edge
    assert contradicts("The tempo is moderate.", {"tempo_bpm": None}) is True  # no tempo: any tempo is invented
    assert checked("Bright brass in 4/4. It has three beats to the bar. It moves at a slow tempo.", four) == \
        "Bright brass in 4/4."


def test_a_track_with_a_tempo_or_a_key_is_never_said_to_hold_no_music():
    # the default model's caption of a soft ambient test clip (session 41): the silence clips' words
    caption = "This ambient recording holds no music: the clip is played at a soft level. It is in A minor."
    assert checked(caption, FACTS) == "It is in A minor."
    assert contradicts("No instruments are playing: the clip is silent.", {"key": "C"}) is True
    # a track stored as having no tempo and no key may be silence: the sentence stands
    assert contradicts("This recording holds no music: the clip is silent.", {"tempo_bpm": None}) is False
    assert contradicts("A noisy, humming synth over a quiet beat.", FACTS) is False  # noise words are no claim


def test_repeated_and_broken_sentences_are_dropped_and_nothing_is_added():
    text = ("This dark recording is in A minor and is in A minor. It is in A minor. A sad waltz. "
            "It is in A minor! -string guitar. Calm strings.")
    assert checked(text, FACTS) == "It is in A minor. A sad waltz. Calm strings."
    assert checked("0:05–0:05–0:05–0:05.", FACTS) == ""
    assert checked("It is in C major.", FACTS) == ""  # everything contradicted: nothing, not the facts
    assert checked("It is in C major. Lively.") == "It is in C major. Lively."  # no facts given


def test_a_sentence_whose_list_names_one_thing_twice_is_dropped():
    # musicllm.lists says what a list is (tests/test_lists.py)
    text = "This pop tune is performed on piano, piano, piano and drums. It keeps a medium-fast pace (96 BPM)."
    assert checked(text, FACTS) == "It keeps a medium-fast pace (96 BPM)."


def test_a_sentence_that_states_a_fact_said_before_is_dropped():
    # the default model's catalog captions (session 43): a key, a metre or a tempo said twice in other words
    assert checked("This happy solo piano tune is performed on piano. It is in E major and is in 4/4 time. "
                   "It sits in E major.") == "This happy solo piano tune is performed on piano. It is in E major and is in 4/4 time."
    assert checked("It sits in A minor and is in 3/4 time. It has three beats to the bar (3/4). It is soft.", FACTS) == \
        "It sits in A minor and is in 3/4 time. It is soft."
    assert checked("It moves at approximately 96 BPM. It is moderate in tempo (about 96 bpm).", FACTS) == \
        "It moves at approximately 96 BPM."
    # the same key twice with another mode: the second is dropped, never the first (nothing is reworded)
    assert checked("It keeps a fast pace (130 BPM) and is in D# major. It sits in D# minor.") == \
        "It keeps a fast pace (130 BPM) and is in D# major."
    # a fact dropped as contradicted is not said: the next sentence may state it
    assert checked("It is in C major. It is in A minor.", FACTS) == "It is in A minor."
    # different facts in different sentences stand
    text = "A sad waltz in A minor. About 95 BPM. Three beats to the bar."
    assert checked(text, FACTS) == text
