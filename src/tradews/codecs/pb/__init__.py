"""Code generated from ``proto/tradews/v1/tradews.proto`` by ``make proto``. Do not edit."""
