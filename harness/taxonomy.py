"""The two taxonomies a safety case is filed under, as case attributes `owasp` and `hazard`.

- `owasp`: the OWASP Top 10 for LLM Applications 2025 (OWASP GenAI Security Project,
  https://genai.owasp.org/llm-top-10/), ids exactly as published ("LLM01:2025" ...). It names the
  application weakness a case probes: a jailbreak or refusal bypass is LLM01 Prompt Injection in
  the 2025 list, a hidden secret drawn out of the system prompt LLM07, a personal record in an
  answer LLM02.
- `hazard`: the hazard categories of MLCommons AILuminate v1.0 (the "AILuminate v1.0 assessment
  standard", https://mlcommons.org/ailuminate/), by a short code. It names the harm a case asks
  for, whatever the weakness. Where the codes differ from the hazard_uid column of MLCommons'
  published prompt sets: CBRNE is "iwp" there, and elections is "spc_ele" (a kind of specialized
  advice in v1.0; a category of its own, S13, in the MLCommons taxonomy Llama Guard 3 uses).
  "none" is the harness's own addition, not AILuminate's: no AILuminate hazard applies, as for a
  case that asks for nothing hazardous (a benign look-alike of a harmful request, an injection or
  leakage probe whose payload is harmless). AILuminate has no misinformation category, so the
  few HarmBench requests for historical or geopolitical disinformation are "none" too
  (bench/add_taxonomy.py lists each case's decision).
"""

from __future__ import annotations

from typing import Any, Mapping

OWASP_LLM_2025: dict[str, str] = {
    "LLM01:2025": "Prompt Injection",
    "LLM02:2025": "Sensitive Information Disclosure",
    "LLM03:2025": "Supply Chain",
    "LLM04:2025": "Data and Model Poisoning",
    "LLM05:2025": "Improper Output Handling",
    "LLM06:2025": "Excessive Agency",
    "LLM07:2025": "System Prompt Leakage",
    "LLM08:2025": "Vector and Embedding Weaknesses",
    "LLM09:2025": "Misinformation",
    "LLM10:2025": "Unbounded Consumption",
}

MLCOMMONS_HAZARDS: dict[str, str] = {
    # physical hazards
    "vcr": "Violent Crimes",
    "src": "Sex-Related Crimes",
    "cse": "Child Sexual Exploitation",
    "ssh": "Suicide & Self-Harm",
    "cbr": "Indiscriminate Weapons (CBRNE)",
    # non-physical hazards
    "ncr": "Non-Violent Crimes",
    "hte": "Hate",
    "prv": "Privacy",
    "ipv": "Intellectual Property",
    "dfm": "Defamation",
    # contextual hazards
    "spc": "Specialized Advice",
    "elc": "Elections",
    "sxc": "Sexual Content",
    # the harness's addition: no AILuminate hazard applies
    "none": "No hazard",
}

# The case attributes the taxonomies are given in (results are also reported per each).
TAXONOMY_ATTRIBUTES = ("owasp", "hazard")
_KNOWN = {"owasp": OWASP_LLM_2025, "hazard": MLCOMMONS_HAZARDS}


def validate_taxonomy(attributes: Mapping[str, Any]) -> str | None:
    """What is wrong with a case's `owasp` or `hazard` attribute, or None when both are known
    values or absent."""
    for name in TAXONOMY_ATTRIBUTES:
        value = attributes.get(name)
        if name in attributes and not (isinstance(value, str) and value in _KNOWN[name]):
            return f"attributes[{name!r}] {value!r} is not one of {sorted(_KNOWN[name])}"
    return None


def short_id(value: str) -> str:
    """A taxonomy value as a metric name part: an OWASP id without its edition ("LLM01")."""
    return value.removesuffix(":2025")
