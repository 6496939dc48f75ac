#!/usr/bin/env python3
"""Generate the YAML fingerprint corpus and its expected outputs.

    scripts/fingerprint-corpus/regenerate.sh     (the usual way; see there)
    generate.py OUT_DIR COUNT SEED               (writes OUT_DIR/cases/gNNNN.yaml)

Each case is one small YAML file mixing what PyYAML's YAML 1.1 loader knows:
plain, single- and double-quoted and block scalars, escapes (UTF-16
surrogates alone and in pairs included), YAML 1.1 implicit types, explicit
tags, anchors and aliases (recursive ones too), merge keys, flow and block
collections and non-ASCII text.  About two thirds are shaped like a DEA
(settings.editable.provision.packages / repo_setup.repos present) so that
targetimages is computed too, with recursive aliases sometimes placed where
the fingerprint never looks.  The files are random but reproducible: the
same COUNT and SEED give the same bytes.  Expected outputs come from
legacy.py under real Python 2.7 + PyYAML, never from deploycache.
"""
import os
import random
import sys

PLAIN = [
    "yes", "No", "on", "OFF", "y", "n", "true", "False", "null", "Null", "~", "",
    "0755", "0789", "-0", "+12", "0x1F", "0b101", "1_000", "1:20", "190:20:30", "01:20",
    "1.5", "1.0e+3", "1e3", "1.", ".5", "-.5", ".inf", "-.Inf", ".NaN", "1:20.5", "1_0.5",
    "123456789012345678901234567890", "2016-9-6", "=", "<<", "abc", "fuel-agent",
    "a b c", "caf\u00e9",
    "\u4e2d\u6587", "-", "a-b", "_x", "B", "Zeta", "0.", "-1.5e-10", "12e+3", "0o17",
]
# Values that make the legacy tool fail wherever they are hashed: kept rare.
RARE = ["2016-09-06", "2001-12-14 21:59:43.10 -5", "2016-02-30", "http://x:8080/a"]
WORDS = ["ubuntu", "mos", "deb", "main", "trusty", "priority", "name", "uri", "suite",
         "section", "value", "type", "label", "weight", "a", "b", "A", "\u00e9t\u00e9",
         "k\u00fc", "z", "_", "a_2", "a.2", "a-2", "10", "1.0", "true"]
ESCAPES = ["\\n", "\\t", "\\\\", "\\\"", "\\x41", "\\xe9", "\\u00e9", "\\u4e2d", "\\ud83d",
           "\\ude00", "\\ud83d\\ude00", "\\udbff\\udfff", "\\ud800", "\\udfff", "\\uDC00",
           "\\U0001F600", "\\U0000d83d", "\\U00010000", "\\N", "\\_", "\\L", "\\P", "\\0",
           "\\e", "\\a", "\\ ", "\\uFFFD", "\\uE000", "\\uD7FF"]
ODD = ["\u00e9", "\u00a0", "\u2028x", "\ufffd", "\ue000", "\u0085", "\u20ac", "\u00ff", "\t"]


class Gen:
    def __init__(self, rng):
        self.rng = rng
        self.anchors = []       # complete anchors: (name, kind)
        self.open = []          # anchors of enclosing collections: (name, kind)
        self.next_anchor = 0

    def chance(self, p):
        return self.rng.random() < p

    def anchor(self, kind):
        self.next_anchor += 1
        name = "a%d" % self.next_anchor
        return name

    def word(self):
        return self.rng.choice(WORDS)

    def dq(self):
        parts = []
        for _ in range(self.rng.randint(0, 4)):
            r = self.rng.random()
            if r < 0.5:
                parts.append(self.rng.choice(ESCAPES))
            elif r < 0.7:
                parts.append(self.rng.choice(ODD).replace("\t", " "))
            else:
                parts.append(self.word())
        return '"%s"' % "".join(parts)

    def sq(self):
        text = "".join(self.rng.choice([self.word(), "''", " ", "\\u00e9", "\u00e9", "#", ": "])
                       for _ in range(self.rng.randint(0, 3)))
        return "'%s'" % text

    def scalar(self, flow, key=False):
        """One-line scalar text."""
        r = self.rng.random()
        if r < 0.35:
            s = self.rng.choice(RARE if self.chance(0.04) else PLAIN)
            if s in ("", "-", "<<", "=") or (flow and s in ("a b c", "http://x:8080/a")):
                s = "x"
        elif r < 0.55:
            s = self.dq()
        elif r < 0.7:
            s = self.sq()
        else:
            s = self.word()
        if not key and self.chance(0.08):
            tag = self.rng.choice(["!!str", "!!int", "!!float", "!!bool", "!!null", "!",
                                   "!!python/unicode", "!!python/str", "!!binary",
                                   "!!timestamp"])
            if tag == "!!binary":
                s = self.rng.choice(["aGVsbG8=", "w6k=", "/w==", "7aCA", "aGVsbG8"])
            elif tag == "!!int":
                s = self.rng.choice(["12", "'0x10'", "0o17", "1:20", "x"])
            elif tag == "!!float":
                s = self.rng.choice(["'1e3'", "2", "1:20.5", ".nan", "x"])
            s = "%s %s" % (tag, s)
        if self.chance(0.1):
            name = self.anchor("scalar")
            s = "&%s %s" % (name, s)
            self.anchors.append((name, "scalar"))
        return s

    def alias(self, want=None, recursive=False):
        pool = self.open if recursive else self.anchors
        pool = [a for a in pool if want is None or a[1] == want]
        if not pool:
            return None
        return "*" + self.rng.choice(pool)[0]

    def flow(self, depth):
        if depth > 2 or self.chance(0.45):
            a = self.chance(0.12) and (self.alias(recursive=self.chance(0.3)) or self.alias())
            return a or self.scalar(True)
        kind = self.rng.choice(["seq", "map"])
        props = ""
        name = None
        if self.chance(0.25):
            name = self.anchor(kind)
            props = "&%s " % name
        if self.chance(0.1):
            props = self.rng.choice(["!!python/tuple ", "!!omap ", "!!set ", "!!pairs "]) + props
        if name:
            self.open.append((name, kind))
        n = self.rng.randint(0, 3)
        if kind == "seq":
            body = "[%s]" % ", ".join(self.flow(depth + 1) for _ in range(n))
        else:
            items = []
            for _ in range(n):
                if self.chance(0.1):
                    m = self.alias("map") or self.alias("map", recursive=True)
                    if m:
                        items.append("<<: %s" % m)
                        continue
                items.append("%s: %s" % (self.scalar(True, key=True), self.flow(depth + 1)))
            body = "{%s}" % ", ".join(items)
        if name:
            self.open.pop()
            self.anchors.append((name, kind))
        return props + body

    def block_scalar(self, indent):
        head = self.rng.choice(["|", "|-", "|+", ">", ">-", ">+", "|2", ">1"])
        lines = []
        for _ in range(self.rng.randint(1, 4)):
            lines.append(self.rng.choice(["", self.word(), self.word() + " " + self.word(),
                                          "  more", "\u00e9 \\u00e9", "# not a comment"]))
        pad = " " * (indent + 2)
        if head[-1].isdigit():
            pad = " " * (indent + int(head[-1]))
        text = "".join("\n" + (pad + l if l else "") for l in lines)
        return head + text + ("\n" if self.chance(0.3) else "")

    def value(self, indent, depth):
        """Text after 'key:' or '- ' (starting with a space or a newline)."""
        r = self.rng.random()
        if depth > 2 or r < 0.4:
            return " " + self.scalar(False)
        if r < 0.45:
            return " " + self.flow(1)
        if r < 0.5:
            return " " + self.block_scalar(indent).rstrip("\n")
        if r < 0.57:
            a = self.alias(recursive=self.chance(0.3)) or self.alias()
            if a:
                return " " + a
        kind = self.rng.choice(["seq", "map"])
        props = ""
        name = None
        if self.chance(0.25):
            name = self.anchor(kind)
            props = " &" + name
            self.open.append((name, kind))
        if kind == "map" and self.chance(0.08):
            props += " !!omap"
            body = self.block_seq(indent + 2, depth + 1, omap=True)
        elif kind == "map":
            body = self.block_map(indent + 2, depth + 1)
        else:
            body = self.block_seq(indent + self.rng.choice([0, 2]), depth + 1)
        if name:
            self.open.pop()
            self.anchors.append((name, kind))
        return props + "\n" + body

    def block_map(self, indent, depth, forced=()):
        lines = []
        pad = " " * indent
        # Forced items first: their values were generated already, and an
        # alias must come after its anchor.
        items = list(forced) + [None] * self.rng.randint(1, 3)
        for item in items:
            if item is not None:
                k, v = item
                lines.append("%s%s:%s" % (pad, k, v))
                continue
            if self.chance(0.1):
                m = self.alias("map") or self.alias("map", recursive=True)
                if m:
                    lines.append("%s<<: %s" % (pad, m if self.chance(0.7) else "[%s]" % m))
                    continue
            if self.chance(0.05):
                key = "!!python/tuple [%s, %s]" % (self.scalar(True, key=True), self.scalar(True, key=True))
                if self.chance(0.3):
                    key = self.flow(1)  # a list or dict key: unhashable unless a scalar
                lines.append("%s? %s\n%s:%s" % (pad, key, pad, self.value(indent, depth)))
                continue
            lines.append("%s%s:%s" % (pad, self.scalar(False, key=True), self.value(indent, depth)))
        return "\n".join(lines)

    def block_seq(self, indent, depth, omap=False):
        pad = " " * indent
        lines = []
        for _ in range(self.rng.randint(1, 4)):
            if omap:
                lines.append("%s- %s:%s" % (pad, self.scalar(False, key=True), self.value(indent + 2, depth + 1)))
            else:
                lines.append("%s-%s" % (pad, self.value(indent + 2, depth)))
        return "\n".join(lines)

    def document(self):
        forced = []
        if self.chance(0.65):
            provision = "\n" + self.block_map(6, 3, forced=[("packages", self.value(6, 2))])
            repos = "\n" + self.block_map(6, 3, forced=[("repos", self.value(6, 2))])
            editable = "\n" + self.block_map(4, 2, forced=[("provision", provision), ("repo_setup", repos)])
            settings = "\n" + self.block_map(2, 1, forced=[("editable", editable)])
            forced.append(("settings", settings))
        if self.chance(0.25):
            # A recursive structure in a part the DEA fingerprint never reads.
            n = self.anchor("map")
            forced.append(("other", " &%s\n  self: *%s\n  list: &%sl [*%sl, *%s]" % (n, n, n, n, n)))
        head = self.rng.choice(["", "", "", "---\n", "%YAML 1.1\n---\n", "# comment\n"])
        body = self.block_map(0, 0, forced=forced) if forced or self.chance(0.8) else self.block_seq(0, 0)
        tail = self.rng.choice(["\n", "\n", "\n...\n", "", "\n\n# end\n"])
        return head + body + tail


def main():
    out, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cases = os.path.join(out, "cases")
    os.makedirs(cases, exist_ok=True)
    for i in range(count):
        gen = Gen(random.Random("%d-%d" % (seed, i)))
        text = gen.document()
        data = text.encode("utf-8")
        if gen.chance(0.05):
            data = b"\xef\xbb\xbf" + data
        with open(os.path.join(cases, "g%04d.yaml" % i), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
