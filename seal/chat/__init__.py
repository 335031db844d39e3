"""Learning while chatting: a session whose model keeps what it is told, its adapter store and
the `seal-chat` terminal."""
