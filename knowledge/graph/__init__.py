"""The graph ops edit: categories (tree, aliases, attribute rules), brands (aliases, the categories
they sell, with support), noise terms; the rules every edit obeys and the editor's pages."""
