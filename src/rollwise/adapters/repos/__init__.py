"""Source repositories the risk learner reads changes from (``learning.features.ChangeSource``)."""
