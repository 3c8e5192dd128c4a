"""Pure text functions behind the caption-quality figures (no state, no I/O).

Words are lowercase runs of letters/digits (apostrophes inside a word kept), so "The dog's ball."
gives ``["the", "dog's", "ball"]``. Duplicate detection works on the normalised text: those words
joined by single spaces (case, punctuation and spacing ignored).

Nouns (for grounding) are an *approximation*: no part-of-speech tagger is installed, so a noun is a
content word (letters only, at least 3 long) that is not in a closed lexicon of stop words, common
verbs, adjectives, adverbs and video-meta words ("camera", "shot", "scene"...), does not end in
-ly, and does not end in -ing/-ed unless a known noun ("building", "bed"); words are lemmatised by
simple plural rules (dogs -> dog, boxes -> box, puppies -> puppy) before the lexicon lookup.
"""

from __future__ import annotations

import re
from functools import lru_cache

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")

STOP_WORDS = frozenset(
    """a an the and or but nor so yet for of in on at to from by with without within into onto upon
    over under above below between among through during before after about around across along
    against behind beside besides beyond near off out up down toward towards via per than then
    there here where when while whilst as if because since until unless though although whether
    this that these those it its it's itself they them their theirs themselves he him his himself
    she her hers herself we us our ours ourselves you your yours yourself i me my mine myself who
    whom whose which what whatever whoever one ones some any each every all both either neither
    few many much more most less least several such own same other another no not only very too
    also just even still again ever never always often sometimes once twice perhaps maybe quite
    rather almost nearly really is are was were be been being am do does did done doing have has
    had having can could will would shall should may might must get gets got getting there's
    that's what's let's lot lots bit kind sort type way ways thing things something anything
    nothing everything someone anyone everyone nobody somebody anybody everybody two three four
    five six seven eight nine ten first second third last next""".split()
)

VERBS = frozenset(
    """walk run stand sit lie move look hold carry wear show appear seem turn go come make take
    give put set keep play dance sing talk speak smile laugh cry eat drink cook cut pour open
    close push pull throw catch kick hit jump climb ride drive fly swim float fall rise grow
    shine glow flow pass cross enter leave reach point wave touch use work read write watch
    see hear feel think know want need try begin start stop continue remain stay follow lead
    sway pan zoom tilt track capture depict feature focus frame film record shoot reveal
    display include contain surround fill cover line face gaze stare glance rest lean bend
    hang swing spin roll slide shake tremble run race chase fight hug kiss paint draw build
    change become create form seem sit move dart wander stroll hurry rush glide hover drift
    sparkle reflect illuminate light perform prepare place arrange adjust examine inspect
    observe explore approach navigate travel head emerge disappear vanish occur happen unfold
    transition cut fade blur shift continue linger showcase highlight convey suggest evoke
    add bring hand lift lower raise drop fold wipe wash clean brush comb type click scroll
    tap press hold grab clutch grip squeeze stir mix chop slice fry bake boil serve taste
    breathe sleep wake blink nod shrug scratch rub pat stroke""".split()
)

ADJECTIVES = frozenset(
    """red orange yellow green blue purple pink brown black white gray grey golden silver dark
    light bright dim pale vivid colorful colourful big small large little tiny huge giant tall
    short long wide narrow thick thin high low deep shallow old young new ancient modern fresh
    good bad great nice beautiful pretty ugly lovely handsome cute happy sad angry calm quiet
    loud soft hard smooth rough wet dry warm cool cold hot clear cloudy sunny rainy snowy windy
    foggy misty busy empty full open closed quick fast slow steady still gentle rapid sudden
    heavy lush green natural urban rural wooden metal metallic plastic glass stone concrete
    various several different similar whole entire main central distant nearby close far
    visible blurry sharp detailed simple complex serene peaceful tranquil vibrant dynamic
    static cinematic dramatic realistic casual formal elegant rustic cozy clean dirty messy
    neat tidy round square flat curved straight upper lower inner outer middle overall
    professional natural outdoor indoor background foreground left right front back top bottom
    center centre side multiple single lone subtle warm golden dusky shadowy textured glossy
    striped patterned plain casual sleek shiny dull muted rich deep bold faint intense""".split()
)

ADVERBS = frozenset(
    """slowly quickly gently softly briefly closely slightly highly mostly mainly partly fully
    together apart away back forward forwards backward backwards upward upwards downward
    downwards inside outside indoors outdoors ahead behind alongside throughout meanwhile
    later soon now today tonight already""".split()
)

# words about the video itself rather than what is in it
META_WORDS = frozenset(
    """video clip scene shot camera frame frames footage image picture view angle moment
    sequence segment background foreground left right front side top bottom middle center
    centre distance area part setting atmosphere mood style lighting composition perspective
    close-up closeup viewer shots overall motion movement""".split()
)

# nouns that the -ing/-ed rule would otherwise drop
ING_ED_NOUNS = frozenset(
    """building buildings ceiling ceilings clothing painting paintings evening morning
    something thing things ring rings king wedding sibling string strings wing wings ping
    railing pudding stocking stockings sling swing bed beds shed sled seed seeds reed weed
    weeds sled speed""".split()
)


def words(text: str | None) -> list[str]:
    """Lowercase word tokens of ``text`` (empty for None)."""
    if not text:
        return []
    return WORD_RE.findall(text.lower())


def normalise(text: str | None) -> str:
    """Case-, punctuation- and spacing-insensitive form used for duplicate detection."""
    return " ".join(words(text))


@lru_cache(maxsize=65_536)
def lemma(word: str) -> str:
    """Crude singular form: puppies -> puppy, boxes -> box, dogs -> dog, glass -> glass."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "'s")):
        return word[:-1]
    if word.endswith("'s"):
        return word[:-2]
    return word


@lru_cache(maxsize=65_536)
def is_noun(word: str) -> bool:
    """The documented noun approximation (see the module docstring); ``word`` is lowercase."""
    if len(word) < 3 or not word.replace("'", "").isalpha():
        return False
    if word in ING_ED_NOUNS:
        return True
    base = lemma(word)
    for lexicon in (STOP_WORDS, VERBS, ADJECTIVES, ADVERBS, META_WORDS):
        if word in lexicon or base in lexicon:
            return False
    if word.endswith("ly") or word.endswith("ing") or word.endswith("ed"):
        return False
    # third-person verb forms of the verb lexicon ("walks", "watches")
    if word.endswith("es") and word[:-2] in VERBS:
        return False
    return True


@lru_cache(maxsize=65_536)
def noun_lemma(word: str) -> str | None:
    """The lemma of ``word`` when it is an (approximate) noun, else None."""
    return lemma(word) if is_noun(word) else None


def nouns(tokens: list[str]) -> set[str]:
    """Lemmatised approximate nouns among ``tokens`` (numbers skipped before the caches)."""
    found = set(map(noun_lemma, (t for t in tokens if t[-1].isalpha())))
    found.discard(None)
    return found


def grounding(caption_tokens: list[str], frame_tokens: list[str]) -> float | None:
    """Share of the caption's (approximate) nouns that occur, lemmatised, in some frame caption.

    None when the caption has no noun or there is no frame caption to check against.
    """
    caption_nouns = nouns(caption_tokens)
    if not caption_nouns or not frame_tokens:
        return None
    frame_lemmas = set(map(lemma, set(frame_tokens)))
    return len(caption_nouns & frame_lemmas) / len(caption_nouns)


def type_token_ratio(tokens: list[str]) -> float | None:
    return len(set(tokens)) / len(tokens) if tokens else None


def repeated_trigram_share(tokens: list[str]) -> float:
    """Share of the word 3-grams that repeat an earlier 3-gram of the same caption (loops)."""
    total = len(tokens) - 2
    if total <= 0:
        return 0.0
    return 1.0 - len(set(zip(tokens, tokens[1:], tokens[2:]))) / total


def degenerate_reason(tokens: list[str], min_words: int, max_repeated_trigram_share: float) -> str | None:
    """Why a caption that the model returned as ok is unusable, or None when it looks fine."""
    if not tokens:
        return "empty"
    if len(tokens) < min_words:
        return "too_short"
    if repeated_trigram_share(tokens) > max_repeated_trigram_share:
        return "repetitive"
    return None


def opener(tokens: list[str], n: int = 3) -> str | None:
    """The first ``n`` words (template-collapse signal), or None for an empty caption."""
    return " ".join(tokens[:n]) if tokens else None


def leading_phrase(reason: str | None, max_chars: int = 60) -> str:
    """Group free-text error reasons by their leading phrase: the text before the first ':'
    (or ' (' / ' - '), with digits masked, e.g. "cannot decode: moov atom not found" -> "cannot decode"."""
    if reason is None or not str(reason).strip():
        return "(no reason given)"
    text = " ".join(str(reason).split())
    for sep in (":", " (", " - ", ";"):
        idx = text.find(sep)
        if idx > 0:
            text = text[:idx]
    text = re.sub(r"\d+(\.\d+)?", "N", text).strip()
    return text[:max_chars] or "(no reason given)"
