"""The oracle task: a review-writing task whose preference is a known function (a sentiment
lexicon), the built-in demonstration that alignment methods raise a true reward."""
