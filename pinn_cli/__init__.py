"""pinn-run: physics-informed neural networks for 1D quantum eigenproblems."""
