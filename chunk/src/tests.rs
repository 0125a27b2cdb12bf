//! Round trips, summaries and corrupt input for whole chunks.
