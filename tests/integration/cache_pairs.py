"""A labelled set for the semantic cache: pairs of user questions that ask the same thing (paraphrases)
and pairs that do not (same topic or same words, different question), written for the test."""

from __future__ import annotations

PARAPHRASES: list[tuple[str, str]] = [
    ("What is the capital of France?", "Which city is the capital of France?"),
    ("How do I reverse a list in Python?", "How can I reverse a Python list?"),
    ("What time is it in Tokyo right now?", "What is the current time in Tokyo?"),
    ("How many legs does a spider have?", "How many legs do spiders have?"),
    ("Translate 'good morning' into Spanish.", "How do you say 'good morning' in Spanish?"),
    ("What is the boiling point of water?", "At what temperature does water boil?"),
    ("Who wrote Romeo and Juliet?", "Who is the author of Romeo and Juliet?"),
    ("How do I make a cup of tea?", "How should I make a cup of tea?"),
    ("What is the population of Canada?", "How many people live in Canada?"),
    ("Recommend a good science fiction book.", "Can you recommend a good science fiction book?"),
    ("How far is the Moon from the Earth?", "What is the distance from the Earth to the Moon?"),
    ("What does HTTP stand for?", "What is HTTP short for?"),
    ("How do I convert Celsius to Fahrenheit?", "How can I convert Celsius into Fahrenheit?"),
    ("What is the largest ocean on Earth?", "Which ocean is the largest on Earth?"),
    ("Give me a recipe for pancakes.", "Can you give me a pancake recipe?"),
    ("How do I sort a dictionary by value in Python?", "How can I sort a Python dictionary by its values?"),
    ("What is the speed of light?", "How fast does light travel?"),
    ("When did World War II end?", "In what year did World War II end?"),
    ("What is the square root of 144?", "What's the square root of 144?"),
    ("Explain photosynthesis in simple terms.", "Explain photosynthesis simply."),
]

DIFFERENT: list[tuple[str, str]] = [
    ("What is the capital of France?", "What is the capital of Germany?"),
    ("How do I reverse a list in Python?", "How do I reverse a string in JavaScript?"),
    ("What time is it in Tokyo right now?", "What is the weather in Tokyo right now?"),
    ("How many legs does a spider have?", "How many eyes does a spider have?"),
    ("Translate 'good morning' into Spanish.", "Translate 'good night' into German."),
    ("What is the boiling point of water?", "What is the freezing point of water?"),
    ("Who wrote Romeo and Juliet?", "Who wrote Pride and Prejudice?"),
    ("How do I make a cup of tea?", "How do I make a cup of coffee?"),
    ("What is the population of Canada?", "What is the area of Canada?"),
    ("Recommend a good science fiction book.", "Recommend a good horror movie."),
    ("How far is the Moon from the Earth?", "How far is Mars from the Sun?"),
    ("What does HTTP stand for?", "What does NASA stand for?"),
    ("How do I convert Celsius to Fahrenheit?", "How do I convert miles to kilometres?"),
    ("What is the largest ocean on Earth?", "What is the smallest country on Earth?"),
    ("Give me a recipe for pancakes.", "Give me a recipe for lasagna."),
    ("How do I sort a dictionary by value in Python?", "How do I delete a file in Python?"),
    ("What is the speed of light?", "What is the speed of sound?"),
    ("When did World War II end?", "When did World War I begin?"),
    ("What is the square root of 144?", "What is the square root of 169?"),
    ("Explain photosynthesis in simple terms.", "Explain inflation in simple terms."),
]
