build/release/src/base/id.o: src/base/id.c src/base/id.h src/base/clock.h
src/base/id.h:
src/base/clock.h:
