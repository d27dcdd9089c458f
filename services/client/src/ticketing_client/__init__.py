"""The web client: server-rendered pages for buying and selling tickets."""
