"""The HTTP skin: quart-trio routes over the runtime. No business rules here."""
