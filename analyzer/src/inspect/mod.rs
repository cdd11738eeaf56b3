//! `inspect` views: the seed tutorial's commands, replayed from a bundle.
