"""A list in an answer's sentence, the item it names twice, and the words that would name one
again (musicllm.lists: the catalog's check, the evaluation's count and the engines' rule)."""

from musicllm.lists import repeated_list_item, repeating_item_words


def test_a_list_that_names_one_thing_twice_is_found():
    # what the default model wrote when its heads heard one instrument and it listed five
    assert repeated_list_item("The instrumentation is tuba, piano, piano, tuba and cello.") == "piano"
    assert repeated_list_item("The instrumentation is recorder, acoustic bass and acoustic bass.") == "acoustic bass"
    assert repeated_list_item("The instrumentation is tuba, piano, tuba, strings and drums.") == "tuba"  # the lead-in's
    assert repeated_list_item("Piano, piano and drums.") == "piano"
    # lists of different things, clauses, and sections told apart by their times
    assert repeated_list_item("The instrumentation is trombone, french horn, tuba and drums.") is None
    assert repeated_list_item("It is laid out as chorus (0:00–0:06) and chorus (0:06–0:12).") is None
    assert repeated_list_item("A calm piano piece in C major, slow and gentle, with soft strings behind it.") is None
    assert repeated_list_item("I can hear piano and drums, and the piano leads.") is None
    # sequences that come back: notes, chords, numerals
    assert repeated_list_item("The C major scale is C, D, E, F, G, A, B and C.") is None
    assert repeated_list_item("The progression is C major, G major, A minor and C major.") is None
    assert repeated_list_item("It follows I, IV, V and I.") is None


def test_the_next_word_may_not_name_a_listed_item_again():
    assert repeating_item_words("The instrumentation is tuba, piano,") == {"tuba", "piano"}
    assert repeating_item_words("The instrumentation is tuba, piano and") == {"tuba", "piano"}
    assert repeating_item_words("Tuba, acoustic bass, acoustic") == {"bass"}  # the item's last word
    assert repeating_item_words("It features french horn, violin and") == {"violin", "horn"}
    assert repeating_item_words("It features piano, strings and drums. It is played on") == set()  # a new sentence
    assert repeating_item_words("It features piano") == set()  # a lead-in, no list yet
    assert repeating_item_words("Tuba, piano, a") == set()  # inside an item that is new so far
    assert repeating_item_words("It is laid out as chorus (0:00–0:06) and chorus") == set()  # a bracket
    assert repeating_item_words("The scale is C, D, E, F, G, A, B,") == set()  # a sequence may come back
    assert repeating_item_words("Its chords are C major, G major, A minor and C") == set()
    # what the words block is what repeated_list_item finds
    for said, word in [("Tuba, piano,", "tuba"), ("Recorder, acoustic bass and acoustic", "bass")]:
        assert word in repeating_item_words(said) and repeated_list_item(f"{said} {word}.")
