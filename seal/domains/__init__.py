"""What a task brings to the outer loop: its contexts, its self-edits, its inner loop and its reward."""
