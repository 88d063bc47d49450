"""Small solvable models that check search algorithms against closed forms."""
