"""The procedural corpus: music composed here as MIDI, rendered with FluidSynth, labelled exactly.

    harmony.py   keys, scales, Roman numerals -> chords and voicings
    grooves.py   drum, bass, comping and melody rhythm grids per metre
    styles.py    the styles: tempo, metres, instruments per role, progressions, dynamics
    seeds.py     deterministic randomness and balanced cycles over choices
    parts.py     the part writers: drums, bass, comping, melody, pad
    textures.py  the texture styles' writers: solo melody, SATB chorale, quartet, orchestra, piano
    composer.py  plan + form + parts -> pretty_midi.PrettyMIDI and its labels
    mood.py      the mood label as a function of the musical choices
    render.py    FluidSynth rendering, bounded in time and length; soundfonts; worker pool
    production.py  seeded studio effects per clip (pedalboard): reverb, EQ, compression, noise
    corpus.py    `musicllm data synth`: clips + manifest, resumable; training and OOD corpora
"""
