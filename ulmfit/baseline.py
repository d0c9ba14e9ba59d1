"""Bag-of-words baseline: TF-IDF over unigrams and bigrams of the same tokens the neural models
see, and logistic regression with its regularisation chosen by cross-validation on the
training examples."""

import numpy as np


def ngrams(doc):
    tokens = doc.astype(str).tolist()
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def bow_classifier(train):
    """Fit TF-IDF + logistic regression on Docs with labels; returns the fitted pipeline."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline

    folds = int(min(3, np.bincount(train.labels).min())) if len(np.unique(train.labels)) > 1 else 0
    if folds < 2:
        raise ValueError("the bag-of-words baseline needs at least 2 examples of every class")
    model = make_pipeline(
        TfidfVectorizer(analyzer=ngrams, sublinear_tf=True, min_df=1),
        LogisticRegressionCV(Cs=[0.1, 1.0, 10.0, 100.0], cv=folds, max_iter=2000),
    )
    return model.fit([train[i] for i in range(len(train))], train.labels)


def bow_probs(model, docs):
    return model.predict_proba([docs[i] for i in range(len(docs))])
