"""The two agent versions of the demo: the same model and memory, different prompts.

v1 answers in the shape its callers parse: a system prompt asking for the bare answer and three
worked examples (few-shot turns), which lifts SmolLM2-135M's exact-match rate from 0-5 % to 30-40 %.

v2 is a plausible release that makes the agent worse: a "friendlier" persona for French-speaking users
that answers in full French sentences and drops the examples. Measured on this model (shared notes,
agents.md), every sampled run of that prompt scored below every run of v1 with the exact grader
(0-5 % against 30-35 %): the paired evaluation should roll it back, whatever live traffic says.
"""

from __future__ import annotations

V1_SYSTEM = "You are a concise assistant. Reply with only the answer: one word or number, no sentence."
V1_SHOTS: tuple[tuple[str, str], ...] = (
    ("What is the capital of Italy?", "Rome"),
    ("What colour is grass?", "green"),
    ("What is 2+2?", "4"),
)
V2_SYSTEM = ("Tu es un assistant chaleureux et bavard. Réponds toujours en français, par une phrase complète "
             "qui explique ta réponse.")

PERSONAS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "v1": (V1_SYSTEM, V1_SHOTS),
    "v2": (V2_SYSTEM, ()),
}


def messages_for(persona: str, question: str, recalled: list[str] | None = None) -> list[dict[str, str]]:
    """The chat sent to the model: the persona's system prompt and shots, then the question with what memory
    recalled. The recollection goes with the question, not into the system prompt, so every prompt of a
    persona shares one prefix (the model server computes it once)."""
    system, shots = PERSONAS[persona]
    messages = [{"role": "system", "content": system}]
    for question_shot, answer_shot in shots:
        messages += [{"role": "user", "content": question_shot}, {"role": "assistant", "content": answer_shot}]
    if recalled:
        question = "(You remember: " + " ".join(recalled) + ")\n" + question
    return [*messages, {"role": "user", "content": question}]
