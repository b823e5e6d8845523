"""`verify-run`: a training checked against its recipe, rule by rule (rules as data in configs/verify/)."""
