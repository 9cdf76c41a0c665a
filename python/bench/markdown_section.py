"""Adds a benchmark's results to its own section of docs/BENCHMARKS.md."""


def add_to_section(path: str, section: str, block: str) -> None:
    """Adds ``block`` at the end of ``section`` (a ``## `` heading) of
    ``path``, creating the section at the end when missing; other sections,
    owned by other benchmarks, are left as they are."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    at = text.find(section)
    if at < 0:
        text = text.rstrip("\n") + f"\n\n{section}\n" + block
    else:
        nxt = text.find("\n## ", at + len(section))
        if nxt < 0:
            text = text.rstrip("\n") + "\n" + block
        else:
            text = text[:nxt].rstrip("\n") + "\n" + block + text[nxt:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
