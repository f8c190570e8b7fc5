"""What the tests share: daemons as processes, clients, and helpers per plugin."""
