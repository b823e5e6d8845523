"""gpt4allj-kit: reproduce GPT4All-J training and evaluation, pinned and proven."""

__version__ = "0.1.0"
