"""Use cases: the persistence of batches and the chat/message reads, over abstract ports."""
