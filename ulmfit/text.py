"""Text preprocessing for ULMFiT: tokenization, vocabulary and compact numericalized documents.

`tokenize` reproduces fastai 2.8's default English tokenization, `Tokenizer(SpacyTokenizer())` as applied by
`tokenize1`, `tokenize_texts` and `Tokenizer.from_df`, without depending on fastai or spaCy:

1. fastai's `text_proc_rules`, in fastai's order: fix_html (which also turns '<br />' into a newline),
   replace_rep ('!!!!' -> 'xxrep 4 !'), replace_wrep ('a a a' -> 'xxwrep 3 a'), spec_add_spaces
   (around / # \\), rm_useless_spaces, replace_all_caps ('HELLO' -> 'xxup hello'), replace_maj
   ('Hello' -> 'xxmaj hello') and lowercase (with 'xxbos' prepended);
2. spaCy's rule-based English tokenizer (`spacy.blank('en')`): split on spaces, then peel prefixes and
   suffixes off each chunk, split on infixes (hyphens between letters, ...) and apply the tokenizer
   exceptions ("don't" -> 'do', "n't"; 'e.g.'; emoticons), keeping URLs whole;
3. fastai's post rule replace_space: spaces inside a token (whitespace tokens such as '\\n ') become '▁'
   (calling a `Tokenizer` on a single str skips this rule; that is the only difference).

One rule differs from fastai 2.8, for WikiText's pre-tokenized marks: fastai's fix_html turns ' @-@ ' into '-',
' @.@ ' into '.' and '<unk>' into xxunk, and here it also turns ' @,@ ' into ',' (as ULMFiT's own scripts and fastai
1's fix_html did), so that '1 @,@ 000' becomes '1,000', as in target-task text, not '1', '@,@', '000'.

Step 2 is a pure-Python port of spaCy 3.8's `Tokenizer` algorithm with its English prefix, suffix, infix,
URL and exception tables (the data at the end of this file). Every space-delimited chunk is tokenized
once per process and memoized, which is what makes this much faster than fastai + spaCy.
"""

import html
import itertools
import operator
import re
import signal
from collections import Counter
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import wait

import numpy as np

from .io import DataError, atomic_path
from .progress import Progress

UNK, PAD, BOS, EOS, FLD, REP, WREP, UP, MAJ = ('xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxrep', 'xxwrep', 'xxup',
                                               'xxmaj')
SPECIAL_TOKENS = [UNK, PAD, BOS, EOS, FLD, REP, WREP, UP, MAJ]  # fastai's order; ids 0..8 in every vocab

# ----------------------------------------------------------------------------------------------------------
# fastai's pre-tokenization rules (fastai.text.core.defaults.text_proc_rules)

_HTML_FIXES = [('#39;', "'"), ('amp;', '&'), ('#146;', "'"), ('nbsp;', ' '), ('#36;', '$'), ('\\n', '\n'),
               ('quot;', "'"), ('<br />', '\n'), ('\\"', '"'), ('<unk>', UNK), (' @.@ ', '.'), (' @-@ ', '-'),
               (' @,@ ', ','), ('...', ' …')]  # ' @,@ ': fastai 1's rule, which fastai 2 dropped (see above)
_RE_REP = re.compile(r'(\S)\1\1+')  # a character repeated 3+ times (fastai: (\S)(\1{2,}), same matches)
_RE_WREP = re.compile(r'(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)')  # a word repeated 3+ times (fastai's regex)
_RE_SPACES = re.compile(' {2,}')
_RE_WS = re.compile(r'[^\S ]\s*')  # whitespace other than single spaces (see _pieces)
_RE_CAPS = re.compile(r'[A-Z][^a-z\s]+')  # replace_all_caps: an all-caps word of 2+ characters
_RE_MAJ = re.compile(r'[A-Z][^A-Z\s]+')  # replace_maj: a capitalized word of 2+ characters


def _fix_html(t):
    for old, new in _HTML_FIXES:
        t = t.replace(old, new)
    return html.unescape(t)


def _rep(m):
    return f' {REP} {len(m[0])} {m[1]} '


def _wrep(m):
    return f' {WREP} {len(m[2].split()) + 2} {m[1]} {m[3]}'


def _pieces(text):
    """Apply fastai's rules up to lowercasing; return the text split into space-separated pieces.

    spaCy splits on single spaces, and a whitespace run other than one space becomes a token (minus one
    leading space). Those runs are turned into their own pieces, with fastai's replace_space ('▁') applied.
    """
    t = _RE_REP.sub(_rep, _fix_html(text))
    words = t.split()
    if any(map(operator.eq, words, words[1:])):  # wrep needs two equal words in a row; skip its slow regex if none
        t = _RE_WREP.sub(_wrep, t)
    t = t.replace('/', ' / ').replace('#', ' # ').replace('\\', ' \\ ')
    t = _RE_SPACES.sub(' ', t).strip()
    t = _RE_WS.sub(lambda m: ' ' + m[0].replace(' ', '▁') + ' ', t).replace('  ', ' ')  # drop spaCy's separator
    return t.split(' ')


_CACHE = {}  # piece (original case) -> tuple of tokens; one per process
_CACHE_MAX = 2_000_000
_UNMERGED = {}  # piece -> its tokens before the special-case matcher, for the few pieces where it merged tokens


def _piece_tokens(w):
    """Tokens of one piece: fastai's xxup/xxmaj marker, then spaCy's tokens of the lowercased piece."""
    toks = _CACHE.get(w)
    if toks is None:
        if not w or w[0].isspace():
            toks = (w,) if w else ()
        else:
            # a word matching both rules (e.g. 'A1') gets xxup: fastai lowercases it before replace_maj
            mark = (UP,) if _RE_CAPS.fullmatch(w) else (MAJ,) if _RE_MAJ.fullmatch(w) else ()
            toks = mark + tuple(_spacy_chunk(w.lower()))
            if not _PATTERNS.keys().isdisjoint(toks):
                unmerged, toks = toks, tuple(_merge_specials(toks))
                if toks != unmerged:
                    _UNMERGED[w] = unmerged
        if len(_CACHE) < _CACHE_MAX:
            _CACHE[w] = toks
    return toks


def tokenize(text: str) -> list[str]:
    """Tokenize one text exactly as fastai's `Tokenizer(SpacyTokenizer())` does: ['xxbos', 'xxmaj', ...]."""
    if not isinstance(text, str):
        raise TypeError(f'tokenize expects a str, got {type(text).__name__}')
    pieces, get = _pieces(text), _CACHE.get
    toks = [BOS]
    for w in pieces:
        toks += get(w) or _piece_tokens(w)
    if _UNMERGED.keys().isdisjoint(pieces):
        return toks
    # spaCy's matcher runs over the whole text: a run of tokens spelling an exception across a space is rejected
    # but still blocks the overlapping matches inside the pieces ("shape:) )." keeps ':', ')', ')').
    toks, owner = [BOS], [-1]
    for k, w in enumerate(pieces):
        unmerged = _UNMERGED.get(w) or _piece_tokens(w)
        toks += unmerged
        owner += [k] * len(unmerged)
    return _merge_specials(toks, owner)


def _tokenize_chunk(texts):
    return [tokenize(t) for t in texts]


def _collect(results, total, progress):
    out = []
    with Progress(total, 'tokenize', progress, count='docs', unit='docs') as bar:
        for r in results:
            out += r
            bar.update(len(r), items=len(r))
    return out


_STOP = (signal.SIGINT, signal.SIGTERM)


def tokenize_texts(texts, workers: int = 2, progress=None) -> list[list[str]]:
    """Tokenize many texts in `workers` processes, in chunks, order preserved. progress: None shows a tqdm bar
    only on a terminal, True always, False never."""
    texts = list(texts)
    size = min(1000, max(1, len(texts) // (8 * max(workers, 1))))
    chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
    if workers <= 1 or len(chunks) <= 1:
        return _collect(map(_tokenize_chunk, chunks), len(texts), progress)
    results = _in_workers(chunks, workers)
    try:
        return _collect(results, len(texts), progress)
    finally:
        results.close()  # stops the workers at once, also on Ctrl-C, SIGTERM or an error


def _in_workers(chunks, workers):
    """Yield _tokenize_chunk(chunk) for every chunk in order, computed by `workers` processes that each get one
    chunk at a time over a pipe of their own. The processes share no lock (multiprocessing.Pool's shared task
    queue does, and its terminate() can wait forever for a lock that an idle worker holds), so killing them,
    which closing this generator does, always ends at once."""
    ctx = get_context()
    procs, conns = zip(*(_start_worker(ctx) for _ in range(workers)))
    try:
        todo, busy, done = iter(enumerate(chunks)), {}, {}

        def feed(conn):
            for i, chunk in itertools.islice(todo, 1):
                conn.send(chunk)
                busy[conn] = i

        for conn in conns:
            feed(conn)
        for i in range(len(chunks)):
            while i not in done:
                for conn in wait(list(busy)):
                    try:
                        done[busy.pop(conn)] = conn.recv()
                    except EOFError:
                        raise RuntimeError("a tokenization worker process died; run again with workers=1 to see "
                                           "why") from None
                    feed(conn)
            yield done.pop(i)
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.join()


def _start_worker(ctx):
    """A worker process and the parent's end of its pipe. Ctrl-C and SIGTERM are blocked while it starts, so
    that it never runs the parent's handlers: it ignores Ctrl-C (the parent stops it) and dies on SIGTERM."""
    parent, child = ctx.Pipe()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)
    try:
        proc = ctx.Process(target=_worker, args=(child,), daemon=True)
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    child.close()
    return proc, parent


def _worker(conn):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)
    try:
        while True:
            conn.send(_tokenize_chunk(conn.recv()))
    except EOFError:  # the parent is gone
        pass


# ----------------------------------------------------------------------------------------------------------
# spaCy's tokenizer algorithm (spacy/tokenizer.pyx: _split_affixes, _attach_tokens, _apply_special_cases)


def _find_suffix(s, lo=0, hi=None):
    """Length of the suffix of s[lo:hi] (0 if none): the leftmost position from which a suffix rule matches to
    the end. The rules' lookbehinds must not see s[:lo] (spaCy slices), so short strings are sliced; long ones
    are searched in their last 10 characters only (linear time), and again in full if a match starts there
    (only the rule for runs of dots can match more than 4 characters)."""
    hi = len(s) if hi is None else hi
    if hi - lo <= 12:
        m = _SUFFIX.search(s[lo:hi])
        return hi - lo - m.start() if m else 0
    m = _SUFFIX.search(s, hi - 10, hi)
    if m and m.start() == hi - 10:
        m = _SUFFIX.search(s[lo:hi])
        return hi - lo - m.start()
    return hi - m.start() if m else 0


def _spacy_chunk(s, specials=True):
    """spaCy's tokens of one chunk without whitespace (before the special-case matcher). The chunk s[lo:hi]
    shrinks as prefixes and suffixes are peeled off; indices instead of slices keep this linear in len(s)."""
    if s.isascii() and s.isalpha():  # fast path: no affix, infix or URL rule applies to plain letters
        return list(_SPECIALS.get(s, (s,))) if specials else [s]
    special = _SPECIALS if specials else {}
    prefixes, suffixes = [], []
    lo, hi, last = 0, len(s), -1
    while lo < hi and hi - lo != last:
        if hi - lo <= _MAX_KEY and s[lo:hi] in special:
            break
        last = hi - lo
        m = _PREFIX.match(s, lo, hi)  # prefix rules have no lookbehind, so pos/endpos act like slicing
        p = m.end() - lo if m else 0
        if p and hi - lo - p <= _MAX_KEY and s[lo + p:hi] in special:
            prefixes.append(s[lo:lo + p])
            lo += p
            break
        q = _find_suffix(s, lo + p, hi)
        if q and hi - q - lo <= _MAX_KEY and s[lo:hi - q] in special:
            suffixes.append(s[hi - q:hi])
            hi -= q
            break
        if p:
            prefixes.append(s[lo:lo + p])
        if q:
            suffixes.append(s[hi - q:hi])
        lo, hi = lo + p, hi - q
    s = s[lo:hi]
    toks = prefixes
    if s:
        if specials and s in _SPECIALS:
            toks += _SPECIALS[s]
        elif '.' in s and (_URL.match(s) if '@' not in s else _URL_AUTH.match(s)):  # every URL has a dot
            toks.append(s)
        else:  # split on infixes, e.g. 'dyn-o-mite' -> dyn - o - mite; an infix at the very start is ignored
            start = 0
            for m in _INFIX.finditer(s):
                a, b = m.span()
                if a == 0:
                    continue
                if a != start:
                    toks.append(s[start:a])
                toks.append(s[a:b])
                start = b
            if start < len(s):
                toks.append(s[start:])
    toks += reversed(suffixes)
    return toks


def _merge_specials(toks, owner=None):
    """spaCy's special-case matcher: token runs spelling an exception are replaced by its tokens
    (e.g. 'smile:)' splits into smile : ) and ': )' is merged back into ':)'). Longest, then leftmost wins;
    a run is merged only if it lies within one piece (owner[i]: the piece of token i; None: all one piece)."""
    spans = [(i, i + len(pat)) for i, t in enumerate(toks) for pat in _PATTERNS.get(t, ())
             if tuple(toks[i:i + len(pat)]) == pat]
    if not spans:
        return list(toks)
    seen, keep = set(), {}
    for a, b in sorted(spans, key=lambda span: (span[0] - span[1], span[0])):
        if a not in seen and b - 1 not in seen and (owner is None or owner[a] == owner[b - 1]):
            keep[a] = b
        seen.update(range(a, b))
    out, i = [], 0
    while i < len(toks):
        if i in keep:
            out += _SPECIALS[''.join(toks[i:keep[i]])]
            i = keep[i]
        else:
            out.append(toks[i])
            i += 1
    return out


# ----------------------------------------------------------------------------------------------------------
# vocabulary and numericalized documents


class Vocab:
    """Token <-> id mapping; SPECIAL_TOKENS always take ids 0..8."""

    def __init__(self, itos):
        self.itos = list(itos)
        if self.itos[:len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(f'a vocabulary must start with {SPECIAL_TOKENS}')
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists, max_size=60000, min_freq=3) -> 'Vocab':
        """Specials first, then tokens seen at least min_freq times by decreasing frequency; ties are broken
        alphabetically, so the result does not depend on document order. max_size counts the specials."""
        counts = Counter()
        for toks in token_lists:
            counts.update(toks)
        words = sorted((w for w, c in counts.items() if c >= min_freq and w not in SPECIAL_TOKENS),
                       key=lambda w: (-counts[w], w))
        return cls(SPECIAL_TOKENS + words[:max(0, max_size - len(SPECIAL_TOKENS))])

    def numericalize(self, tokens) -> np.ndarray:
        return np.fromiter(map(self.stoi.get, tokens, itertools.repeat(0)), dtype=np.int32)  # unknown -> UNK (0)

    def textify(self, ids) -> str:
        return ' '.join(self.itos[i] for i in ids)

    def __len__(self):
        return len(self.itos)


@dataclass
class Docs:
    """A list of numericalized documents stored compactly: one flat int32 array + int64 offsets (+ optional
    int64 labels). Document i is ids[offsets[i]:offsets[i + 1]]; offsets[0] == 0, offsets[-1] == len(ids)."""

    ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, i) -> np.ndarray:
        i = range(len(self))[i]
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1] - self.offsets[0])

    def subset(self, indices) -> 'Docs':
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        lengths = self.lengths[idx]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        src = np.repeat(self.offsets[idx] - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Docs(self.ids[src], offsets, None if self.labels is None else self.labels[idx])

    def reversed(self) -> 'Docs':
        """The backward variant: token order reversed within each document (labels kept)."""
        last = (self.offsets[:-1] + self.offsets[1:] - 1)[np.repeat(np.arange(len(self)), self.lengths)]
        return Docs(self.ids[last - np.arange(len(self.ids))], self.offsets.copy(), self.labels)

    @classmethod
    def concat(cls, docs_list) -> 'Docs':
        """All documents of several Docs in order (labels kept only if every part has them)."""
        ids = np.concatenate([d.ids[d.offsets[0]:d.offsets[-1]] for d in docs_list]).astype(np.int32)
        offsets = np.concatenate([[0], np.cumsum(np.concatenate([d.lengths for d in docs_list]))]).astype(np.int64)
        has = all(d.labels is not None for d in docs_list)
        return cls(ids, offsets, np.concatenate([d.labels for d in docs_list]) if has else None)

    def save(self, path):
        """Write an .npz file atomically (io.atomic_path)."""
        arrays = {'ids': self.ids, 'offsets': self.offsets}
        if self.labels is not None:
            arrays['labels'] = self.labels
        with atomic_path(path) as tmp, open(tmp, 'wb') as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path) -> 'Docs':
        """The documents of an .npz file; a damaged or inconsistent one is a DataError naming it."""
        try:
            with np.load(path) as z:
                docs = cls(z['ids'], z['offsets'], z.get('labels'))
        except Exception as e:  # numpy and zipfile raise several types for damaged files
            raise DataError(f"{path} is damaged ({type(e).__name__}: {' '.join(str(e).split())[:100]}); run the "
                            "prepare step for this dataset again") from e
        n = len(docs.offsets) - 1
        if (docs.offsets.ndim != 1 or n < 0 or docs.offsets[0] != 0 or docs.offsets[-1] != len(docs.ids)
                or np.any(np.diff(docs.offsets) < 0) or docs.labels is not None and len(docs.labels) != n
                or len(docs.ids) and docs.ids.min() < 0):
            raise DataError(f"{path} is damaged (its documents' offsets, ids or labels do not fit together); run the "
                            "prepare step for this dataset again")
        return docs


def numericalize(token_lists, vocab, labels=None) -> Docs:
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = vocab.numericalize(itertools.chain.from_iterable(token_lists))
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(lengths):
            raise ValueError(f'{len(labels)} labels for {len(lengths)} documents')
    return Docs(ids, offsets, labels)


# ----------------------------------------------------------------------------------------------------------
# spaCy 3.8 English tokenizer data (spacy/lang/char_classes.py, punctuation.py, en/tokenizer_exceptions.py).
# Character classes are spaCy's, as code point ranges. The text is lowercased before word tokenization, so
# spaCy's ALPHA_LOWER is ALPHA here and ALPHA_UPPER is its uncased scripts. Exceptions are those with lowercase
# keys, tokens joined by '+'; variants with a typographic apostrophe (’) are derived from the ASCII ones, and
# single-token exceptions without any affix (which cannot change a result) are left out.

_PUNCT = r"… …… , : ; \! \? ¿ ؟ ¡ \( \) \[ \] \{ \} < > _ # \* & 。 ？ ！ ， 、 ； ： ～ · । ، ۔ ؛ ٪"
_QUOTES = r"""\' " ” “ ` ‘ ´ ’ ‚ , „ » « 「 」 『 』 （ ） 〔 〕 【 】 《 》 〈 〉 〈 〉 ⟦ ⟧"""
_HYPHENS = '- – — -- --- —— ~'
_CURRENCY = r"\$ £ € ¥ ฿ US\$ C\$ A\$ ₽ ﷼ ₴ ₠ ₡ ₢ ₣ ₤ ₥ ₦ ₧ ₨ ₩ ₪ ₫ € ₭ ₮ ₯ ₰ ₱ ₲ ₳ ₴ ₵ ₶ ₷ ₸ ₹ ₺ ₻ ₼ ₽ ₾ ₿"
_UNITS = ('km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s km/h kmh '
          'mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K % км км² км³ м м² м³ дм дм² дм³ см см² см³ мм мм² мм³ нм '
          'кг г мг м/с км/ч кПа Па мбар Кб КБ кб Мб МБ мб Гб ГБ гб Тб ТБ тбكم كم² كم³ م م² م³ سم سم² سم³ مم مم² مم³ كم '
          'غرام جرام جم كغ ملغ كوب اكواب')
_ALPHA = ("A-Za-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BF\u01C4-\u02AF\u0386\u0388-\u038A\u038C\u038E\u038F\u0391-"
    "\u03A9\u03AC-\u03AF\u03B1-\u03C9\u03CC-\u03CE\u0400\u0401\u0403-\u040A\u040C\u040D\u0410-\u0451\u0453-"
    "\u045A\u045C\u045D\u0490\u0491\u0496\u0497\u04A2\u04A3\u04AE\u04AF\u04BA\u04BB\u04D8\u04D9\u04E8\u04E9"
    "\u0591-\u05F4\u0620-\u064A\u066E-\u06D5\u06E5-\u06FF\u0750-\u077F\u08A0-\u08BD\u0900-\u09FF\u0B80-\u0CFF"
    "\u0D80-\u0DFF\u1100-\u137F\u1D00-\u1D25\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1EFF\u2C60-\u2C7B\u2C7E\u2C7F"
    "\u2E80-\u2FDF\u2FF0-\u30FF\u31C0-\u31EF\u3200-\u4DBF\u4E00-\u9FFF\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E"
    "\uA790-\uA7B9\uA7FA\uAB30-\uAB5A\uAB60-\uAB64\uAC00-\uD7AF\uF900-\uFAFF\uFB1D-\uFBB1\uFBD3-\uFD3D\uFD50-"
    "\uFDC7\uFDF0-\uFDFB\uFE30-\uFE4F\uFE70-\uFEFC\uFF21-\uFF3A\uFF41-\uFF5A\U0001EE00-\U0001EEBB\U0001F200-"
    "\U0001F2FF\U00020000-\U0002A6DF\U0002A700-\U0002EBEF\U0002F800-\U0002FA1F")
_UNCASED = ("\u0591-\u05F4\u0620-\u064A\u066E-\u06D5\u06E5-\u06FF\u0750-\u077F\u08A0-\u08BD\u0900-\u09FF\u0B80-\u0CFF"
    "\u0D80-\u0DFF\u1100-\u137F\u2E80-\u2FDF\u2FF0-\u30FF\u31C0-\u31EF\u3200-\u4DBF\u4E00-\u9FFF\uAC00-\uD7AF"
    "\uF900-\uFAFF\uFB1D-\uFBB1\uFBD3-\uFD3D\uFD50-\uFDC7\uFDF0-\uFDFB\uFE30-\uFE4F\uFE70-\uFEFC\U0001EE00-"
    "\U0001EEBB\U0001F200-\U0001F2FF\U00020000-\U0002A6DF\U0002A700-\U0002EBEF\U0002F800-\U0002FA1F")
_ICONS = ("\u00A6\u00A9\u00AE\u00B0\u0482\u058D\u058E\u060E\u060F\u06DE\u06E9\u06FD\u06FE\u07F6\u09FA\u0B70\u0BF3-"
    "\u0BF8\u0BFA\u0C7F\u0D4F\u0D79\u0F01-\u0F03\u0F13\u0F15-\u0F17\u0F1A-\u0F1F\u0F34\u0F36\u0F38\u0FBE-"
    "\u0FC5\u0FC7-\u0FCC\u0FCE\u0FCF\u0FD5-\u0FD8\u109E\u109F\u1390-\u1399\u1940\u19DE-\u19FF\u1B61-\u1B6A"
    "\u1B74-\u1B7C\u2100\u2101\u2103-\u2106\u2108\u2109\u2114\u2116\u2117\u211E-\u2123\u2125\u2127\u2129"
    "\u212E\u213A\u213B\u214A\u214C\u214D\u214F\u218A\u218B\u2195-\u2199\u219C-\u219F\u21A1\u21A2\u21A4\u21A5"
    "\u21A7-\u21AD\u21AF-\u21CD\u21D0\u21D1\u21D3\u21D5-\u21F3\u2300-\u2307\u230C-\u231F\u2322-\u2328\u232B-"
    "\u237B\u237D-\u239A\u23B4-\u23DB\u23E2-\u2426\u2440-\u244A\u249C-\u24E9\u2500-\u25B6\u25B8-\u25C0\u25C2-"
    "\u25F7\u2600-\u266E\u2670-\u2767\u2794-\u27BF\u2800-\u28FF\u2B00-\u2B2F\u2B45\u2B46\u2B4D-\u2B73\u2B76-"
    "\u2B95\u2B98-\u2BC8\u2BCA-\u2BFE\u2CE5-\u2CEA\u2E80-\u2E99\u2E9B-\u2EF3\u2F00-\u2FD5\u2FF0-\u2FFB\u3004"
    "\u3012\u3013\u3020\u3036\u3037\u303E\u303F\u3190\u3191\u3196-\u319F\u31C0-\u31E3\u3200-\u321E\u322A-"
    "\u3247\u3250\u3260-\u327F\u328A-\u32B0\u32C0-\u32FE\u3300-\u33FF\u4DC0-\u4DFF\uA490-\uA4C6\uA828-\uA82B"
    "\uA836\uA837\uA839\uAA77-\uAA79\uFDFD\uFFE4\uFFE8\uFFED\uFFEE\uFFFC\uFFFD\U00010137-\U0001013F\U00010179"
    "-\U00010189\U0001018C-\U0001018E\U00010190-\U0001019B\U000101A0\U000101D0-\U000101FC\U00010877\U00010878"
    "\U00010AC8\U0001173F\U00016B3C-\U00016B3F\U00016B45\U0001BC9C\U0001D000-\U0001D0F5\U0001D100-\U0001D126"
    "\U0001D129-\U0001D164\U0001D16A-\U0001D16C\U0001D183\U0001D184\U0001D18C-\U0001D1A9\U0001D1AE-\U0001D1E8"
    "\U0001D200-\U0001D241\U0001D245\U0001D300-\U0001D356\U0001D800-\U0001D9FF\U0001DA37-\U0001DA3A\U0001DA6D"
    "-\U0001DA74\U0001DA76-\U0001DA83\U0001DA85\U0001DA86\U0001ECAC\U0001F000-\U0001F02B\U0001F030-\U0001F093"
    "\U0001F0A0-\U0001F0AE\U0001F0B1-\U0001F0BF\U0001F0C1-\U0001F0CF\U0001F0D1-\U0001F0F5\U0001F110-"
    "\U0001F16B\U0001F170-\U0001F1AC\U0001F1E6-\U0001F202\U0001F210-\U0001F23B\U0001F240-\U0001F248\U0001F250"
    "\U0001F251\U0001F260-\U0001F265\U0001F300-\U0001F3FA\U0001F400-\U0001F6D4\U0001F6E0-\U0001F6EC\U0001F6F0"
    "-\U0001F6F9\U0001F700-\U0001F773\U0001F780-\U0001F7D8\U0001F800-\U0001F80B\U0001F810-\U0001F847"
    "\U0001F850-\U0001F859\U0001F860-\U0001F887\U0001F890-\U0001F8AD\U0001F900-\U0001F90B\U0001F910-"
    "\U0001F93E\U0001F940-\U0001F970\U0001F973-\U0001F976\U0001F97A\U0001F97C-\U0001F9A2\U0001F9B0-\U0001F9B9"
    "\U0001F9C0-\U0001F9C2\U0001F9D0-\U0001F9FF\U0001FA60-\U0001FA6D")
_EXCEPTIONS = ("' '' 'bout 'cause 'cos 'coz 'cuz 'd 'em 'll 'nuff 're 's (*_*) (-8 (-: (-; (-_-) (._.) (: (; (= "
    "(>_<) (^_^) (o: (¬_¬) (ಠ_ಠ) (╯°□°）╯︵┻━┻ )-: ): ._. 10+a.m. 10+am 10+p.m. 10+pm 11+a.m. 11+am 11+p.m. "
    "11+pm 12+a.m. 12+am 12+p.m. 12+pm 1+a.m. 1+am 1+p.m. 1+pm 2+a.m. 2+am 2+p.m. 2+pm 3+a.m. 3+am 3+p.m. "
    "3+pm 4+a.m. 4+am 4+p.m. 4+pm 5+a.m. 5+am 5+p.m. 5+pm 6+a.m. 6+am 6+p.m. 6+pm 7+a.m. 7+am 7+p.m. 7+pm "
    "8) 8-) 8+a.m. 8+am 8+p.m. 8+pm 9+a.m. 9+am 9+p.m. 9+pm :'( :') :'-( :'-) :( :(( :((( :() :) :)) :))) "
    ":* :-( :-(( :-((( :-) :-)) :-))) :-* :-/ :-0 :-3 :-> :-] :-o :-p :-x :-| :-} :/ :0 :1 :3 :> :] :o "
    ":o) :p :x :| :} ;) ;-) ;_; <.< </3 <3 <33 <333 <space> =( =) =/ =3 =[ =] =| >.< >.> >:( >:o ><(((*> "
    "[-: [: [= \\\") ]= a. a.m. ai+n't ai+nt and/or are+n't are+nt b. c'm+on c. ca+n't ca+n't+'ve can+not "
    "ca+nt ca+nt+ve co. could+'ve could+n't could+n't+'ve could+nt could+nt+ve could+ve d. dare+n't "
    "dare+nt did+n't did+n't+'ve did+nt did+nt+ve does+n't does+n't+'ve does+nt does+nt+ve doin' do+n't "
    "do+n't+'ve do+nt do+nt+ve e. e.g. f. g. goin' gon+na got+ta h. had+n't had+n't+'ve had+nt had+nt+ve "
    "has+n't has+nt have+n't have+nt havin' he+'d he+'d+'ve he+'ll he+'ll+'ve he+'s he+d he+d+ve he+ll+ve "
    "he+s how+'d how+'d+'ve how+'d+'y how+'ll how+'ll+'ve how+'re how+'s how+'ve how+d how+d+ve how+ll "
    "how+ll+ve how+re how+s how+ve i+'d i+'d+'ve i+'ll i+'ll+'ve i+'m i+'m+a i+'ve i. i.e. i+d i+d+ve "
    "i+ll+ve i+m i+m+a is+n't is+nt it+'d it+'d+'ve it+'ll it+'ll+'ve it+'s it+d it+d+ve it+ll it+ll+ve "
    "i+ve j. k. l. let+'s lovin' m. may+n't may+n't+'ve may+nt may+nt+ve might+'ve might+n't "
    "might+n't+'ve might+nt might+nt+ve might+ve must+'ve must+n't must+n't+'ve must+nt must+nt+ve "
    "must+ve n. need+n't need+n't+'ve need+nt need+nt+ve not+'ve nothin' not+ve nuthin' o. ol' ought+n't "
    "ought+n't+'ve ought+nt ought+nt+ve p. p.m. q. r. s. sha+n't sha+n't+'ve sha+nt sha+nt+ve she+'d "
    "she+'d+'ve she+'ll she+'ll+'ve she+'s she+d+ve she+ll+ve she+s should+'ve should+n't should+n't+'ve "
    "should+nt should+nt+ve should+ve somethin' t. that+'d that+'d+'ve that+'ll that+'ll+'ve that+'s "
    "that+d that+d+ve that+ll that+ll+ve that+s there+'d there+'d+'ve there+'ll there+'ll+'ve there+'re "
    "there+'s there+'ve there+d there+d+ve there+ll there+ll+ve there+re there+s there+ve these+'d "
    "these+'d+'ve these+'ll these+'ll+'ve these+'re these+'ve these+d these+d+ve these+ll these+ll+ve "
    "these+re these+ve they+'d they+'d+'ve they+'ll they+'ll+'ve they+'re they+'ve they+d they+d+ve "
    "they+ll they+ll+ve they+re they+ve this+'d this+'d+'ve this+'ll this+'ll+'ve this+'s this+d "
    "this+d+ve this+ll this+ll+ve this+s those+'d those+'d+'ve those+'ll those+'ll+'ve those+'re "
    "those+'ve those+d those+d+ve those+ll those+ll+ve those+re those+ve u. v. v.s. vs. w. w/o was+n't "
    "was+nt we+'d we+'d+'ve we+'ll we+'ll+'ve we+'re we+'ve we+d we+d+ve we+ll+ve were+n't were+nt we+ve "
    "what+'d what+'d+'ve what+'ll what+'ll+'ve what+'re what+'s what+'ve what+d what+d+ve what+ll "
    "what+ll+ve what+re what+s what+ve when+'d when+'d+'ve when+'ll when+'ll+'ve when+'re when+'s "
    "when+'ve when+d when+d+ve when+ll when+ll+ve when+re when+s when+ve where+'d where+'d+'ve where+'ll "
    "where+'ll+'ve where+'re where+'s where+'ve where+d where+d+ve where+ll where+ll+ve where+re where+s "
    "where+ve who+'d who+'d+'ve who+'ll who+'ll+'ve who+'re who+'s who+'ve who+d who+d+ve who+ll "
    "who+ll+ve who+s who+ve why+'d why+'d+'ve why+'ll why+'ll+'ve why+'re why+'s why+'ve why+d why+d+ve "
    "why+ll why+ll+ve why+re why+s why+ve wo+n't wo+n't+'ve wo+nt wo+nt+ve would+'ve would+n't "
    "would+n't+'ve would+nt would+nt+ve would+ve x. y'+all y. y+all you+'d you+'d+'ve you+'ll you+'ll+'ve "
    "you+'re you+'ve you+d you+d+ve you+ll you+ll+ve you+re you+ve z. °+c+. °+f+. °+k+. ä. ö. ü. — ‘s")

_ELLIPSES, _ICON = [r'\.\.+', '…'], f'[{_ICONS}]'
_CONCAT_QUOTES, _PUNCT_ALT = _QUOTES.replace(' ', ''), '|'.join(_PUNCT.split())
_PREFIX = re.compile('|'.join(['§', '%', '=', '—', '–', r'\+(?![0-9])', *_PUNCT.split(), *_ELLIPSES, *_QUOTES.split(),
                               *_CURRENCY.split(), _ICON]))
_SUFFIX = re.compile('|'.join(p + '$' for p in [
    *_PUNCT.split(), *_ELLIPSES, *_QUOTES.split(), _ICON, "'s", "'S", '’s', '’S', '—', '–', r'(?<=[0-9])\+',
    r'(?<=°[FfCcKk])\.', f"(?<=[0-9])(?:{'|'.join(_CURRENCY.split())})", f"(?<=[0-9])(?:{'|'.join(_UNITS.split())})",
    f'(?<=[0-9{_ALPHA}%²\\-\\+{_PUNCT_ALT}(?:{_CONCAT_QUOTES})])\\.',  # spaCy's class, with its '|' and '(?:'
    f'(?<=[{_UNCASED}][{_UNCASED}])\\.']))
_INFIX = re.compile('|'.join([
    *_ELLIPSES, _ICON, r'(?<=[0-9])[+\-\*^](?=[0-9-])',
    f'(?<=[{_ALPHA}{_CONCAT_QUOTES}])\\.(?=[{_UNCASED}{_CONCAT_QUOTES}])', f'(?<=[{_ALPHA}]),(?=[{_ALPHA}])',
    f"(?<=[{_ALPHA}0-9])(?:{'|'.join(_HYPHENS.split())})(?=[{_ALPHA}])",
    f'(?<=[{_ALPHA}0-9])[:<>=/](?=[{_ALPHA}])']))
_URL_HOST = (r'(?:(?!(?:10|127)(?:\.\d{1,3}){3})(?!(?:169\.254|192\.168)(?:\.\d{1,3}){2})'
             r'(?!172\.(?:1[6-9]|2\d|3[0-1])(?:\.\d{1,3}){2})(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])'
             r'(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}(?:\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4]))'
             r'|(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?[A-Za-z0-9\u00a1-\uffff]\.)+'
             rf'(?:[{_ALPHA}]{{2,63}}))(?::\d{{2,5}})?(?:[/?#]\S*)?$')
_URL = re.compile(r'(?:(?:[\w\+\-\.]{2,})://)?' + _URL_HOST)
_URL_AUTH = re.compile(r'(?:(?:[\w\+\-\.]{2,})://)?(?:\S+(?::\S*)?@)?' + _URL_HOST)  # 'user:pass@' needs an '@'

_SPECIALS = {}  # exception -> its tokens
for _entry in _EXCEPTIONS.split():
    _toks = tuple(_entry.split('+'))
    _SPECIALS[''.join(_toks)] = _toks
    _SPECIALS[''.join(_toks).replace("'", '’')] = tuple(t.replace("'", '’') for t in _toks)
_MAX_KEY = max(map(len, _SPECIALS))
_PATTERNS = {}  # first token -> token runs that spell an exception once split by the affix rules
for _key in _SPECIALS:
    if _PREFIX.match(_key) or _find_suffix(_key) or _INFIX.search(_key):
        _pat = tuple(_spacy_chunk(_key, specials=False))
        _PATTERNS.setdefault(_pat[0], []).append(_pat)
