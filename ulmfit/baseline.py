"""Bag-of-words baseline: TF-IDF over unigrams and bigrams of the same tokens the neural models
see, and logistic regression with its regularisation chosen by cross-validation on the
training examples."""

import warnings

import numpy as np


def ngrams(doc):
    tokens = doc.astype(str).tolist()
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def bow_classifier(train):
    """Fit TF-IDF + logistic regression on Docs with labels; returns the fitted pipeline.

    C is chosen from 1, 10, 100 by up to 3-fold cross-validation; when some class has a
    single example (tiny budgets of unbalanced data) C = 10 is used without cross-validation.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline

    counts = np.bincount(train.labels)
    folds = int(min(3, counts[counts > 0].min()))
    classifier = (LogisticRegressionCV(Cs=[1.0, 10.0, 100.0], cv=folds, max_iter=2000) if folds >= 2
                  else LogisticRegression(C=10.0, max_iter=2000))
    model = make_pipeline(TfidfVectorizer(analyzer=ngrams, sublinear_tf=True, min_df=1), classifier)
    with warnings.catch_warnings():  # scikit-learn's notices of future default changes
        warnings.simplefilter("ignore", FutureWarning)
        return model.fit([train[i] for i in range(len(train))], train.labels)


def bow_probs(model, docs, n_classes):
    """Probabilities [docs, n_classes]: scikit-learn's columns are the classes its sample had, laid out here over
    every class of the dataset (0 for a class the labelled sample lacks)."""
    probs = np.zeros((len(docs), n_classes))
    probs[:, model.classes_] = model.predict_proba([docs[i] for i in range(len(docs))])
    return probs
