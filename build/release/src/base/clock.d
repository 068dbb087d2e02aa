build/release/src/base/clock.o: src/base/clock.c src/base/clock.h \
 src/base/error.h
src/base/clock.h:
src/base/error.h:
